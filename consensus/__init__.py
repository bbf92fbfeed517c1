"""somnet's BFT consensus core: a pure, deterministic Tendermint state machine.

No I/O, no clock, no global randomness: events in, actions out (see messages.py).
"""
