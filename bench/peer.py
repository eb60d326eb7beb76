"""The peer: what a Python team would write without pydbal — SQLAlchemy 2.0 async ORM over
asyncpg, a mapped Workflow class on the same ``dbal.workflows`` table, an explicit ``tenant_id``
filter in every query. It logs in as the superuser, so FORCE ROW LEVEL SECURITY does not apply to
it (superusers bypass RLS). Written fairly: the same indexes serve it, bulk inserts go through
``session.execute(insert(Workflow), rows)``, JSON is (de)serialised with orjson like pydbal's,
sessions do not expire objects on commit. Defaults otherwise (pooling, autobegin)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    FetchedValue,
    Integer,
    Text,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column


class Base(DeclarativeBase):
    pass


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = {"schema": "dbal"}  # noqa: RUF012
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(
        PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4
    )
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    nodes: Mapped[Any] = mapped_column(JSONB)
    edges: Mapped[Any] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=FetchedValue())
    version: Mapped[int] = mapped_column(Integer, server_default=FetchedValue())
    variables: Mapped[Any] = mapped_column(JSONB)
    config: Mapped[Any] = mapped_column(JSONB)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text))
    category: Mapped[str] = mapped_column(Text, server_default=FetchedValue())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=FetchedValue()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=FetchedValue()
    )
    created_by: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(Text)
    validation_status: Mapped[str] = mapped_column(Text, server_default=FetchedValue())
    validation_errors: Mapped[Any] = mapped_column(JSONB)
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    validator_version: Mapped[int | None] = mapped_column(Integer)
    execution_count: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    finished_execution_count: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    last_executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_execution_status: Mapped[str | None] = mapped_column(Text)
    average_execution_time: Mapped[float | None] = mapped_column(Double)
    is_locked: Mapped[bool] = mapped_column(Boolean, server_default=FetchedValue())
    locked_by: Mapped[str | None] = mapped_column(Text)
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lock_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lock_token: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    search_document: Mapped[Any] = deferred(
        mapped_column(TSVECTOR, server_default=FetchedValue(), server_onupdate=FetchedValue())
    )


def sa_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    raise ValueError("the peer needs a URL DSN (postgresql://...)")


DEFINITION = (
    "name",
    "description",
    "nodes",
    "edges",
    "variables",
    "config",
    "tags",
    "category",
    "enabled",
)


class Peer:
    name = "peer"

    def __init__(self, dsn: str, user: str = "u-0") -> None:
        self.dsn = dsn
        self.user = user
        self.engine: AsyncEngine
        self.Session: async_sessionmaker[Any]

    async def start(self, pool_size: int) -> None:
        self.engine = create_async_engine(
            sa_url(self.dsn),
            pool_size=pool_size,
            max_overflow=0,
            json_serializer=lambda v: orjson.dumps(v).decode(),
            json_deserializer=orjson.loads,
        )
        self.Session = async_sessionmaker(self.engine, expire_on_commit=False)
        async with self.engine.connect() as conn:  # warm the pool and the dialect
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()

    async def get(self, tenant: str, wid: uuid.UUID) -> Workflow | None:
        async with self.Session() as s:
            return (
                await s.scalars(
                    select(Workflow).where(Workflow.tenant_id == tenant, Workflow.id == wid)
                )
            ).first()

    async def list(self, tenant: str) -> tuple[int, list[Workflow]]:
        stmt = (
            select(Workflow, func.count().over().label("total"))
            .where(Workflow.tenant_id == tenant, Workflow.enabled.is_(True))
            .order_by(Workflow.updated_at.desc(), Workflow.id.desc())
            .limit(20)
        )
        async with self.Session() as s:
            rows = (await s.execute(stmt)).all()
        return (rows[0].total if rows else 0), [r[0] for r in rows]

    async def search(self, tenant: str, text: str) -> list[Workflow]:
        tsq = func.websearch_to_tsquery(literal_column("'english'::regconfig"), text)
        stmt = (
            select(Workflow)
            .where(Workflow.tenant_id == tenant, Workflow.search_document.op("@@")(tsq))
            .order_by(
                func.ts_rank(Workflow.search_document, tsq).desc(), Workflow.name, Workflow.id
            )
            .limit(10)
        )
        async with self.Session() as s:
            return list((await s.scalars(stmt)).all())

    def _new(self, tenant: str, inp: dict[str, Any]) -> Workflow:
        return Workflow(tenant_id=tenant, created_by=self.user, **{k: inp[k] for k in DEFINITION})

    async def create(self, tenant: str, inp: dict[str, Any]) -> Workflow:
        async with self.Session() as s, s.begin():
            wf = self._new(tenant, inp)
            s.add(wf)
        return wf

    async def create_many(self, tenant: str, inputs: list[dict[str, Any]]) -> int:
        rows = [
            {
                "tenant_id": tenant,
                "id": uuid.uuid4(),
                "created_by": self.user,
                **{k: i[k] for k in DEFINITION},
            }
            for i in inputs
        ]
        async with self.Session() as s, s.begin():
            await s.execute(insert(Workflow), rows)
        return len(rows)

    async def update(self, tenant: str, wid: uuid.UUID, description: str) -> Workflow:
        stmt = (
            update(Workflow)
            .where(Workflow.tenant_id == tenant, Workflow.id == wid)
            .values(description=description, updated_by=self.user, version=Workflow.version + 1)
            .returning(Workflow)
        )
        async with self.Session() as s, s.begin():
            return (await s.scalars(stmt)).one()

    async def lock_cycle(self, tenant: str, wid: uuid.UUID) -> bool:
        now = func.clock_timestamp()
        acquire = (
            update(Workflow)
            .where(
                Workflow.tenant_id == tenant,
                Workflow.id == wid,
                Workflow.enabled.is_(True),
                or_(Workflow.is_locked.is_(False), Workflow.lock_expires_at <= now),
            )
            .values(
                is_locked=True,
                locked_by=self.user,
                locked_at=now,
                lock_expires_at=now + literal_column("interval '30 seconds'"),
                lock_token=Workflow.lock_token + 1,
            )
            .returning(Workflow.lock_token)
            .execution_options(synchronize_session=False)
        )
        async with self.Session() as s, s.begin():
            token = (await s.execute(acquire)).scalar_one_or_none()
        if token is None:
            return False
        release = (
            update(Workflow)
            .where(
                Workflow.tenant_id == tenant,
                Workflow.id == wid,
                Workflow.lock_token == token,
                Workflow.is_locked.is_(True),
            )
            .values(is_locked=False, locked_by=None, locked_at=None, lock_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        async with self.Session() as s, s.begin():
            await s.execute(release)
        return True

    async def export(self, tenant: str, limit: int) -> bytes:
        stmt = select(Workflow).where(Workflow.tenant_id == tenant).order_by(Workflow.name)
        async with self.Session() as s:
            wfs = (await s.scalars(stmt.limit(limit))).all()
        now = datetime.now(UTC).isoformat()
        return orjson.dumps(
            [
                {
                    "format": "pydbal.workflow/v1",
                    "exportedAt": now,
                    "workflow": {k: getattr(w, k) for k in DEFINITION},
                    "validationReport": None,
                }
                for w in wfs
            ]
        )

    async def import_(self, tenant: str, data: bytes) -> int:
        return await self.create_many(tenant, [b["workflow"] for b in orjson.loads(data)])
