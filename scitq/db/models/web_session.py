"""Server-side sessions of the web dashboard and the login attempts that throttle
password guessing (docs/web.md, section 7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import NOW, Base


class WebSession(Base):
    """A login: the browser's cookie holds a random token, this row its SHA-256 only, so
    that reading the table gives nobody a session. A session is valid while it is not
    ended, was seen within the idle lifetime and began within the absolute one."""

    __tablename__ = "web_session"

    #: SHA-256 of the token the session cookie carries.
    id: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("web_user.id", ondelete="CASCADE"), index=True
    )
    #: The client address at login (as the dashboard saw it, after trusted proxies).
    address: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: logout, password, role, admin, idle, expired.
    end_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("octet_length(id) = 32", name="id"),
        CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="ended"),
        CheckConstraint(
            "end_reason IN ('logout', 'password', 'role', 'admin', 'idle', 'expired')",
            name="end_reason",
        ),
    )


class WebLoginAttempt(Base):
    """One password login attempt, recorded before the password is checked (as failed,
    turned into succeeded by the session it opens), so that concurrent guesses count."""

    __tablename__ = "web_login_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    #: The name typed (it need not exist).
    user_name: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    #: failed, succeeded, or throttled (refused without checking the password).
    outcome: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("outcome IN ('failed', 'succeeded', 'throttled')", name="outcome"),
        Index("web_login_attempt_user_name_at_idx", "user_name", "at"),
        Index("web_login_attempt_address_at_idx", "address", "at"),
        Index("web_login_attempt_at_idx", "at"),
    )
