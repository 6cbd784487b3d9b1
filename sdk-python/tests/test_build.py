"""The checks `python -m weir_udf build` makes before componentize-py runs (no Wasm here)."""

import pathlib
import textwrap

import pytest
from weir_udf.__main__ import main
from weir_udf._build import BuildError, load_module


def write(tmp_path: pathlib.Path, name: str, source: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_loads_functions_in_definition_order(tmp_path):
    path = write(
        tmp_path,
        "good_module.py",
        """
        from weir_udf import scalar

        @scalar
        def b(x: int) -> int:
            return x

        @scalar
        def a(x: str) -> str:
            return x
        """,
    )
    _, functions = load_module(path)
    assert [f.name for f in functions] == ["b", "a"]


def test_syntax_error_has_file_line_and_caret(tmp_path):
    path = write(tmp_path, "broken_syntax.py", "def f(x:\n    return 1\n")
    with pytest.raises(BuildError, match=r"broken_syntax.py:\d+:\d+: syntax error"):
        load_module(path)


def test_missing_hint_names_the_function_and_parameter(tmp_path):
    path = write(
        tmp_path,
        "missing_hint.py",
        """
        from weir_udf import scalar

        @scalar
        def to_usd(price) -> float:
            return price / 100.0
        """,
    )
    with pytest.raises(
        BuildError, match=r"function `to_usd`, parameter `price`: missing type hint"
    ):
        load_module(path)


def test_unsupported_type_names_the_type(tmp_path):
    path = write(
        tmp_path,
        "bad_type.py",
        """
        from weir_udf import scalar

        @scalar
        def f(x: set[int]) -> int:
            return 0
        """,
    )
    with pytest.raises(BuildError, match=r"parameter `x`: unsupported type hint `set\[int\]`"):
        load_module(path)


def test_import_failure_is_reported(tmp_path):
    path = write(tmp_path, "needs_numpy.py", "import numpy_that_does_not_exist\n")
    with pytest.raises(BuildError, match="ModuleNotFoundError"):
        load_module(path)


def test_module_without_functions(tmp_path):
    path = write(tmp_path, "empty_module.py", "X = 1\n")
    with pytest.raises(BuildError, match="defines no Weir function"):
        load_module(path)


def test_duplicate_names(tmp_path):
    path = write(
        tmp_path,
        "dupes.py",
        """
        from weir_udf import scalar

        @scalar(name="f")
        def one(x: int) -> int:
            return x

        @scalar(name="f")
        def two(x: int) -> int:
            return x
        """,
    )
    with pytest.raises(BuildError, match="two functions are named `f`"):
        load_module(path)


def test_reserved_and_missing_paths(tmp_path):
    with pytest.raises(BuildError, match="no such file"):
        load_module(tmp_path / "absent.py")
    with pytest.raises(BuildError, match="reserved"):
        load_module(write(tmp_path, "wit_world.py", "X = 1\n"))


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "broken_cli.py", "def f(:\n")
    assert main(["build", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_cli_describe(tmp_path, capsys):
    path = write(
        tmp_path,
        "describe_me.py",
        """
        from weir_udf import scalar

        @scalar
        def to_usd(price: int) -> float:
            return price / 100.0
        """,
    )
    assert main(["describe", str(path)]) == 0
    assert "to_usd(price BIGINT) -> DOUBLE" in capsys.readouterr().out
