"""NoN's leaf types: errors, configs and enums, results, messages, text rendering, settings, redaction, version.

Nothing in this package imports anything else from NoN, so every other package may import it: a provider author,
an operator author and the engine all build on these types. See ARCHITECTURE.md.
"""
