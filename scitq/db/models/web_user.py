"""People who may log in to the web dashboard."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import NOW, Base


class WebUser(Base):
    """A person who may log in to the web dashboard (issue 6)."""

    __tablename__ = "web_user"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    #: A werkzeug password hash (``scrypt:...``); never shown, never logged.
    password_hash: Mapped[str] = mapped_column(Text)
    #: admin: may act (pause, retry, edit workers...); viewer: may only look.
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("name <> '' AND name !~ '[[:cntrl:]]'", name="name"),
        CheckConstraint("role IN ('admin', 'viewer')", name="role"),
    )
