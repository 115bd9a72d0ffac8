"""The BIDS App: command line, BIDS queries, pairing, derivatives and group table."""
