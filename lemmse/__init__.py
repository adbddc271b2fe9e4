"""lemmse: closed-form (local-)equivariant MMSE estimators and the tools to test CNNs against them."""
__version__ = "0.1.0"
