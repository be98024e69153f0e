"""exit_status: the one place a command-line entry point turns a user mistake into exit status 2."""
import pytest

from multissl.errors import ConfigError, DataError, exit_status


def test_success_is_status_zero(capsys):
    calls = []
    assert exit_status("prog", lambda: calls.append(1)) == 0
    assert calls == [1] and capsys.readouterr().err == ""


@pytest.mark.parametrize("error", [DataError("data.csv: record 3: NaN"), ConfigError("unknown method 'x'")])
def test_user_error_is_one_line_and_status_two(capsys, error):
    def job():
        raise error

    assert exit_status("prog", job) == 2
    assert capsys.readouterr().err == f"prog: error: {error}\n"


def test_other_exceptions_and_argparse_exits_pass_through():
    def bug():
        raise KeyError("a bug, not a user mistake")

    def bad_option():
        raise SystemExit(2)

    with pytest.raises(KeyError):
        exit_status("prog", bug)
    with pytest.raises(SystemExit):
        exit_status("prog", bad_option)
