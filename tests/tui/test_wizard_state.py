"""The wizard's choices turn into core's Selection, and a saved Selection turns back into choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_fakes import SOURCE_URL, TARGET_URL, shop_catalog

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError
from pgtide.core.model.plan import Plan
from pgtide.core.model.profiles import Profile
from pgtide.core.model.selection import Selection
from pgtide.screens.state import TimeFilterChoice, WizardState

ALL = {(t.schema, t.name) for t in shop_catalog().tables}


def state_with(selected: set[tuple[str, str]]) -> WizardState:
    state = WizardState(databases=["shop"])
    state.adopt_catalog("shop", shop_catalog())
    state.selected["shop"] = set(selected)
    return state


def treatments(selection: Selection) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    out = {}
    for schema, name in sorted(ALL):
        t = selection.treatment("shop", schema, name)
        out[(schema, name)] = (t.mode, t.row_filter, str(t.time_filter) if t.time_filter else None)
    return out


def test_everything_selected_needs_no_table_rule() -> None:
    selection = state_with(ALL).selection()
    assert [rule.name for rule in selection.include_databases] == ["shop"]
    assert selection.rules == ()


def test_a_few_tables_become_include_rules_and_most_become_exclude_rules() -> None:
    few = state_with({("public", "metrics"), ("public", "page_views")}).selection()
    assert {rule.kind for rule in few.rules} == {"include"} and len(few.rules) == 2
    assert {k for k, v in treatments(few).items() if v[0] != "excluded"} == {("public", "metrics"),
                                                                            ("public", "page_views")}
    most = state_with(ALL - {("public", "audit_log")}).selection()
    assert [(rule.kind, rule.target.table) for rule in most.rules] == [("exclude", "audit_log")]  # type: ignore[union-attr]


def test_modes_and_filters_become_rules_core_agrees_with() -> None:
    state = state_with(ALL)
    state.set_mode(("shop", "public", "audit_log"), "schema_only")
    state.row_filters[("shop", "public", "page_views")] = "id > 100"
    state.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "90 days")
    seen = treatments(state.selection())
    assert seen[("public", "audit_log")] == ("schema_only", None, None)
    assert seen[("public", "page_views")] == ("full", "id > 100", None)
    assert seen[("public", "metrics")] == ("full", None, "recorded_at in the last 90 days")
    state.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "ninety days")
    with pytest.raises(InputError):
        state.selection()


def test_a_saved_selection_comes_back_as_the_same_choices() -> None:
    original = state_with(ALL - {("billing", "invoices")})
    original.set_mode(("shop", "public", "audit_log"), "schema_only")
    original.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "6 months")
    saved = original.selection()
    plan = Plan(Endpoint.parse(SOURCE_URL), Endpoint.parse(TARGET_URL), saved)
    loaded = WizardState.from_profile(Profile("p", Path("/p.toml"), plan), {"source": None, "target": "pw"})
    assert loaded.databases == ["shop"] and loaded.target_fields.password == "pw"
    loaded.adopt_catalog("shop", shop_catalog())
    assert loaded.selected["shop"] == original.selected["shop"]
    assert treatments(loaded.selection()) == treatments(saved)
