"""
chatd's tests: run with C{python -m pytest} or C{python -m twisted.trial tests}.
"""
