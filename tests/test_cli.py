"""Every `linguamix` command answers --help with its usage and exit status 0."""

import pytest

from linguamix import cli


def test_top_level_help_lists_every_command(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  assert all(name in out for name in cli.COMMANDS)
  assert cli.main(["no-such-command"]) == 2


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_command_help(name, capsys):
  try:
    rc = cli.main([name, "--help"])
  except SystemExit as e:  # argparse exits after printing help
    rc = e.code
  assert rc == 0
  assert f"linguamix {name}" in capsys.readouterr().out
