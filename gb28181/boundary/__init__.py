"""The security boundary: share policy, ID mapping, audit."""
