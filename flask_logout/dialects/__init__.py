"""The HTTP API dialects: request parsing and answer rendering only.

Each dialect is one module holding one blueprint and its error envelope over
the shared :class:`~flask_logout.service.LogoutService`.
"""
