"""Validator side: core contracts (``core``), queue backends (``queues``), the asyncio worker pool
(``workers``), the memory-aware process pool (``process``) and domain adapters (``adapters``)."""
