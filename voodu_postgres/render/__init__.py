"""Pure renderers: spec values in, file text out.

Every renderer returns a :class:`~voodu_postgres.domain.rendered.Rendered` (the text plus its
sha256) and never touches the filesystem: writing assets is an adapter's job. Later passes compare
the digests to decide whether a pod must be recreated, so renderers are deterministic. Imports
``domain`` only.
"""
