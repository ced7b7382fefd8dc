"""The demos behind ``nonstop demo`` and the order workflow they run.

They ship with the engine so that ``nonstop demo`` works from an installed
wheel:

- :mod:`engine.demo.local`: ``nonstop demo`` (two releases, a restart, a
  canary, a rollback);
- :mod:`engine.demo.kafka`: ``nonstop demo --kafka`` (the same orders fed from
  Kafka);
- :mod:`engine.demo.orders`: the order workflow (``engine.demo.orders:registry``
  is the CLI's default ``--app``), with its committed ``schema.lock``;
- :mod:`engine.demo.orders_faulty`: a deliberately faulty ``orders@3``.

Importing this package loads none of them.
"""

__all__: list[str] = []
