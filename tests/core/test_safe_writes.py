"""Writes touch only what the user named (issue 22): links are followed as the kernel would
follow them, never resolved and renamed over behind its back.

Every link, folder and file is built in ``tmp_path``; "another user's link" is played by
monkeypatching the link-owner lookup (``writes._link_uid``), or, when the tests run as root,
by a real ``lchown``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from paramcalc import ParamcalcError, RecurrentSpec, count
from paramcalc.core import writes
from paramcalc.core.writes import atomic_write, may_follow, output_path
from paramcalc.render.export import check_export_target
from tests.helpers import invoke, one_line_error

RESULT = count(RecurrentSpec("lstm", 4, 4))
COUNT = ["count", "lstm", "-d", "4", "-H", "4"]
STICKY_SHARED = 0o1777  # /tmp's mode: sticky, world-writable
UID = os.geteuid() if hasattr(os, "geteuid") else 0


def shared_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(STICKY_SHARED)
    return folder


def other_users_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every link now reads as owned by a user who is neither us nor the folder's owner."""
    monkeypatch.setattr(writes, "_link_uid", lambda st: st.st_uid + 4242)


# --- the rule itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link_uid", "folder_uid", "mode", "follower", "follows"),
    [
        (1000, 0, STICKY_SHARED, 1001, False),  # another user's link in /tmp: refused
        (1001, 0, STICKY_SHARED, 1001, True),  # my own link in /tmp
        (0, 0, STICKY_SHARED, 1001, True),  # the folder owner's link in /tmp
        (1000, 0, 0o777, 1001, True),  # world-writable but not sticky: the rule does not apply
        (1000, 0, 0o1755, 1001, True),  # sticky but not world-writable
        (1000, 1000, 0o755, 1001, True),  # an ordinary folder
        (1000, 0, STICKY_SHARED, None, True),  # no user ids (Windows)
    ],
)
def test_may_follow_is_the_kernels_protected_symlinks_rule(link_uid, folder_uid, mode, follower, follows):
    assert may_follow(link_uid, folder_uid, stat.S_IFDIR | mode, follower) is follows


# --- --output ----------------------------------------------------------------------------------


def test_another_users_link_in_a_shared_folder_is_refused(tmp_path, monkeypatch):
    mine = tmp_path / "mine.csv"
    mine.write_text("KEEP\n")
    link = shared_folder(tmp_path) / "out.csv"
    link.symlink_to(mine)
    other_users_link(monkeypatch)
    with pytest.raises(ParamcalcError, match="owned by another user") as err:
        RESULT.export(link)
    assert "\n" not in str(err.value)
    line = one_line_error(invoke(*COUNT, "--output", link))
    assert "symbolic link owned by another user" in line and "not followed" in line
    assert mine.read_text() == "KEEP\n" and link.is_symlink()
    with pytest.raises(ParamcalcError, match="owned by another user"):
        atomic_write(link, lambda tmp: Path(tmp).write_text("x"))  # the writer checks again
    assert mine.read_text() == "KEEP\n"


def test_a_link_owned_by_another_user_for_real_is_refused(tmp_path):
    if UID != 0:
        pytest.skip("only root can give a link to another user")
    mine = tmp_path / "mine.csv"
    mine.write_text("KEEP\n")
    link = shared_folder(tmp_path) / "out.csv"
    link.symlink_to(mine)
    os.lchown(link, 4242, 4242)
    line = one_line_error(invoke(*COUNT, "--output", link))
    assert "owned by another user" in line
    assert mine.read_text() == "KEEP\n"


def test_my_own_link_in_a_shared_folder_is_followed(tmp_path):
    mine = tmp_path / "mine.csv"
    link = shared_folder(tmp_path) / "out.csv"
    link.symlink_to(mine)
    res = invoke(*COUNT, "--output", link)
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and "weight_ih_l0" in mine.read_text()


def test_another_users_link_in_an_ordinary_folder_is_followed(tmp_path, monkeypatch):
    mine = tmp_path / "mine.csv"
    link = tmp_path / "out.csv"
    link.symlink_to(mine)
    other_users_link(monkeypatch)  # the kernel follows it: so do we
    assert check_export_target(link) == (mine, ".csv")
    RESULT.export(link)
    assert link.is_symlink() and "weight_ih_l0" in mine.read_text()


def test_every_link_of_a_chain_is_checked(tmp_path, monkeypatch):
    mine = tmp_path / "mine.csv"
    mine.write_text("KEEP\n")
    shared = shared_folder(tmp_path)
    (shared / "hop.csv").symlink_to(mine)
    first = tmp_path / "first.csv"
    first.symlink_to(shared / "hop.csv")  # an ordinary link to a link in the shared folder
    other_users_link(monkeypatch)
    line = one_line_error(invoke(*COUNT, "--output", first))
    assert "hop.csv" in line and "owned by another user" in line
    assert mine.read_text() == "KEEP\n"


def test_a_relative_chain_is_followed_from_each_links_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.csv").symlink_to("../real.csv")
    (tmp_path / "a" / "one.csv").symlink_to("../b/two.csv")
    assert output_path(tmp_path / "a" / "one.csv", "x") == tmp_path / "a" / ".." / "b" / ".." / "real.csv"
    RESULT.export(tmp_path / "a" / "one.csv")
    assert "weight_ih_l0" in (tmp_path / "real.csv").read_text()
    assert (tmp_path / "a" / "one.csv").is_symlink() and (tmp_path / "b" / "two.csv").is_symlink()


def test_a_link_loop_is_one_line(tmp_path):
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    line = one_line_error(invoke(*COUNT, "--output", tmp_path / "a.csv"))
    assert "symbolic links in a row" in line


def test_a_dangling_link_creates_the_file_it_names(tmp_path):
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "new.csv")
    RESULT.export(link)
    assert link.is_symlink() and "weight_ih_l0" in (tmp_path / "new.csv").read_text()


def test_a_fifo_as_output_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    line = one_line_error(invoke(*COUNT, "--output", fifo))
    assert "not a regular file" in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --- the cache's writer: the entry itself, never what it names -----------------------------------


def test_without_following_a_link_is_replaced_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("KEEP\n")
    victim.chmod(0o600)
    link = tmp_path / "cache.json"
    link.symlink_to(victim)
    atomic_write(link, lambda tmp: Path(tmp).write_text("{}\n"), follow_links=False)
    assert not link.is_symlink() and link.read_text() == "{}\n"
    assert victim.read_text() == "KEEP\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(link.stat().st_mode) == 0o666 & ~umask  # a new file's mode, not the victim's


def test_without_following_a_fifo_is_replaced_not_opened(tmp_path):
    fifo = tmp_path / "cache.json"
    os.mkfifo(fifo)
    atomic_write(fifo, lambda tmp: Path(tmp).write_text("{}\n"), follow_links=False)
    assert stat.S_ISREG(os.lstat(fifo).st_mode) and fifo.read_text() == "{}\n"


def test_without_following_a_folder_is_one_line(tmp_path):
    (tmp_path / "cache.json").mkdir()
    with pytest.raises(ParamcalcError, match="cannot write"):
        atomic_write(tmp_path / "cache.json", lambda tmp: Path(tmp).write_text("{}"), follow_links=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]  # no temporary file left


def test_a_full_disk_is_found_before_any_work(tmp_path, monkeypatch):
    class Full:
        f_bavail, f_frsize = 3, 4096

    monkeypatch.setattr(os, "statvfs", lambda folder: Full())
    line = one_line_error(invoke(*COUNT, "--output", tmp_path / "b.json"))
    assert "12,288 bytes free" in line and list(tmp_path.iterdir()) == []
