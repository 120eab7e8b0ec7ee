"""The pure domain: entities, the command lifecycle, access rules and errors.

Nothing in here performs I/O or reads the clock; time is always passed in, so every
rule can be tested (and property-tested) without sockets, databases or sleeps.
"""
