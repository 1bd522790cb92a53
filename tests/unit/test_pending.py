"""The publisher's outbox: a mark is forgotten only once its page is written, never a newer one."""

from __future__ import annotations

from wheelmill.db import pending
from wheelmill.db.engine import Database


def take(db: Database) -> pending.Pending:
    with db.read() as session:
        return pending.take(session, limit=10_000)


def test_published_marks_go_and_marks_made_meanwhile_stay(db: Database) -> None:
    with db.write() as session:
        pending.mark(session, projects=[f"p{n}" for n in range(600)], logs=[1, 2])
    taken = take(db)
    assert len(taken.projects) == 600 and taken.logs == {1, 2} and taken.site
    with db.write() as session:  # p7 changes again while its page is being written
        pending.mark(session, projects=["p7"])
    with db.transaction() as tx:
        pending.done(tx, taken.marks)
    left = take(db)
    assert left.projects == {"p7"} and not left.logs and left.site  # p7 shows on the site pages too
    with db.transaction() as tx:
        pending.done(tx, left.marks)
    assert not take(db).marks and not take(db).site
    with db.write() as session:  # a change only the site pages show, such as a lost lease
        pending.mark(session)
    assert take(db).site and not take(db).projects
