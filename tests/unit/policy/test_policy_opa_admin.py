"""Joining a package's files into the one module `gateway policy push` uploads."""

from __future__ import annotations

import pytest

from gateway.policy.opa_admin import OpaAdminError, join_by_package

A = """# Header comment.
package gateway

import rego.v1
import data.gateway_data as settings

allow if helper
"""

B = """package gateway

import rego.v1

helper if settings_ok

settings_ok := true
"""


def test_files_of_a_package_become_one_module_with_imports_once() -> None:
    (module,) = join_by_package({"gateway/a.rego": A, "gateway/b.rego": B})
    assert module.id == "push/gateway" and module.files == ["gateway/a.rego", "gateway/b.rego"]
    lines = module.text.splitlines()
    assert lines[0] == "package gateway"
    assert lines.count("import rego.v1") == 1
    assert "import data.gateway_data as settings" in lines
    assert module.text.count("package ") == 1


def test_rows_map_back_to_the_original_file_and_line() -> None:
    (module,) = join_by_package({"gateway/a.rego": A, "gateway/b.rego": B})
    lines = module.text.splitlines()
    assert module.place(lines.index("allow if helper") + 1) == "gateway/a.rego:7"
    assert module.place(lines.index("settings_ok := true") + 1) == "gateway/b.rego:7"
    assert module.place(1) == "push/gateway:1"  # the package clause the join wrote
    helper_row = lines.index("helper if settings_ok") + 1
    message = module.translate(f"conflict at push/gateway:{helper_row}")
    assert message == "conflict at gateway/b.rego:5"


def test_packages_stay_apart() -> None:
    other = "package other\n\nx := 1\n"
    modules = join_by_package({"gateway/b.rego": B, "other/x.rego": other})
    assert [m.package for m in modules] == ["gateway", "other"]
    assert modules[1].text.splitlines()[-1] == "x := 1"


def test_one_alias_for_two_imports_is_refused() -> None:
    clash = "package gateway\n\nimport data.elsewhere as settings\n\ny := 1\n"
    with pytest.raises(
        OpaAdminError, match=r"gateway/c\.rego:3 imports data\.elsewhere as settings"
    ):
        join_by_package({"gateway/a.rego": A, "gateway/c.rego": clash})


def test_a_file_without_package_is_refused() -> None:
    with pytest.raises(OpaAdminError, match=r"x\.rego:1: expected a package clause"):
        join_by_package({"x.rego": "allow := true\n"})
