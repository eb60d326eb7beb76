"""pydbal's benchmark suite: ``python -m bench [--size tiny|quick|full] [--dsn ...]``.

Measures pydbal against the floor (hand-written asyncpg, bench/floor.py) and the peer
(SQLAlchemy 2.0 async ORM, bench/peer.py) in the same run; see bench/run.py."""
