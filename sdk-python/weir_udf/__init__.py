"""Weir user functions in Python. The decorators and the componentize-py build come next."""
