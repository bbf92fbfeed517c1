"""The asyncio node around the consensus core: network, storage, ledger, API."""
