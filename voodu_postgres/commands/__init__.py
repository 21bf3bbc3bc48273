"""The commands, one module per family, shared by standalone and the Voodu plugin.

A command loads :class:`~voodu_postgres.commands.facts.Facts` through a mode
(:mod:`.local` standalone, :mod:`.plugin` under Voodu), decides a
:class:`~voodu_postgres.commands.base.Result` — message, data, actions in Voodu's vocabulary —
and hands it back to the mode, which carries the actions out locally or prints them as the
controller's envelope.

* pure decisions: :mod:`.apps` (link, unlink, consumer refresh), :mod:`.expose`, :mod:`.psql`,
  :mod:`.info`, :mod:`.facts`, :mod:`.base` — an import-linter contract keeps Docker, SQL and
  subprocess out of them;
* orchestration with effects: :mod:`.credentials` (new-password), :mod:`.cluster` (apply,
  reconcile, delete, promote, rejoin), :mod:`.files` (validate, render, expand, config),
  :mod:`.physical` (the physical ``backup``/``restore`` pair);
* the modes: :mod:`.mode` (the protocol), :mod:`.local`, :mod:`.plugin`, :mod:`.controller`.
"""
