"""The Services protocol: the real core and every fake implement all of it, and a gap fails loudly."""

from __future__ import annotations

import inspect

import pytest
from test_app_behaviour import ExplodingServices
from test_stale_results import GatedFilterCheck, GatedProbe, GatedValidation
from tui_fakes import FakeServices, wizard_state
from tui_support import SNAPSHOT_SIZE, make_app, open_pick, settle, wait_until

from pgtide.screens.services import (
    CoreServices,
    Services,
    check_services,
    service_methods,
)
from pgtide.widgets.modals import ErrorModal

#: Every stand-in the TUI tests hand to the app.
FAKES: tuple[type, ...] = (FakeServices, ExplodingServices, GatedValidation, GatedFilterCheck, GatedProbe)


def parameters(function: object) -> list[tuple[str, object, object]]:
    """What a caller relies on: each parameter's name, kind and default (``self`` left out)."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values() if p.name != "self"]


def test_the_protocol_lists_every_use_case() -> None:
    names = service_methods()
    assert len(names) >= 20
    for expected in ("validate", "estimate", "build_plan", "probe", "init", "teardown", "verifier"):
        assert expected in names


@pytest.mark.parametrize("implementation", [CoreServices, *FAKES], ids=lambda cls: cls.__name__)
def test_every_implementation_has_every_method_with_the_protocols_parameters(implementation: type) -> None:
    for name in service_methods():
        method = getattr(implementation, name, None)
        assert callable(method), f"{implementation.__name__} lacks {name}"
        assert parameters(method) == parameters(getattr(Services, name)), f"{implementation.__name__}.{name}"
    check_services(implementation.__new__(implementation))


@pytest.mark.parametrize("fake", FAKES, ids=lambda cls: cls.__name__)
def test_no_fake_inherits_the_real_core(fake: type) -> None:
    # Inheriting would hand every method a fake forgets to real servers and the real keyring.
    assert not issubclass(fake, CoreServices)
    assert Services not in fake.__mro__  # the protocol's ``...`` bodies would answer None just as quietly


def forgetful_fake() -> type:
    """FakeServices without estimate(), as a fake written before estimate existed would be."""
    members = {name: value for name, value in vars(FakeServices).items()
               if name not in ("estimate", "__dict__", "__weakref__")}
    return type("ForgetfulServices", (), members)


def test_a_fake_missing_a_method_is_refused_when_the_app_is_built() -> None:
    with pytest.raises(TypeError, match="ForgetfulServices does not implement Services: missing estimate"):
        make_app(services=forgetful_fake()())


async def test_a_fake_missing_a_method_fails_in_place_and_never_reaches_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even past the check (a method gone after the app was built), the gap is an error, not core."""
    import pgtide.core.catalog.estimate as core_estimate

    reached: list[object] = []
    monkeypatch.setattr(core_estimate, "estimate", lambda *args, **kwargs: reached.append(args))
    forgetful = forgetful_fake()()
    app = make_app(services=FakeServices())
    async with app.run_test(size=SNAPSHOT_SIZE) as pilot:
        await open_pick(pilot, wizard_state())
        app.services = forgetful  # type: ignore[assignment]
        app.show_filters()
        await settle(pilot)
        app.show_review()
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), what="the error modal")
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert "AttributeError" in modal.error_title + modal.cause, (modal.error_title, modal.cause)
    assert reached == []
