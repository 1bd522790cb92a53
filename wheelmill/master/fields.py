"""Request fields the database can store, checked where a request arrives.

Its integers are 64-bit and PostgreSQL's text holds no NUL: a value past either is the client's
mistake, answered with 422 like any other invalid field, not a 500 from the database driver.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

ByteCount = Annotated[int, Field(ge=0, le=2**63 - 1)]
PlainText = Annotated[str, Field(pattern=r"^[^\x00]*$")]
