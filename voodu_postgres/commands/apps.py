"""Wiring apps to a cluster: ``link``, ``unlink``, and keeping linked apps' URLs current.

A linked consumer is any ``scope/name`` bucket (an app under Voodu, or just a bucket in the
standalone store). ``link`` writes ``DATABASE_URL`` (and with ``--reads`` ``DATABASE_READ_URL``)
into it and records it in the provider's ``POSTGRES_LINKED_CONSUMERS``. Whenever the writer moves
(promote), the reader set changes (scaling) or the password changes (``new-password``),
:func:`consumer_refresh` computes the writes that bring every linked consumer up to date — only
the keys that actually differ, so an unchanged app is not restarted. A consumer linked without
``--reads`` never gains ``DATABASE_READ_URL``.

Pure: decisions only; the sink carries out the actions.
"""

from __future__ import annotations

from collections.abc import Mapping

from voodu_postgres.commands.base import Result
from voodu_postgres.commands.facts import Facts, consumer_ref
from voodu_postgres.domain.actions import Action, config_set
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.keys import LINKED_CONSUMERS_KEY
from voodu_postgres.domain.naming import Ref
from voodu_postgres.render.urls import Urls, database_urls

URL_KEY = "DATABASE_URL"
READ_URL_KEY = "DATABASE_READ_URL"


def urls_for(facts: Facts, *, password: str | None = None, load_balance: bool = False) -> Urls:
    spec = facts.spec
    return database_urls(facts.ref, user=spec.user, password=password if password is not None else facts.password,
                         database=spec.database, port=spec.port, replicas=spec.replicas, primary=facts.primary,
                         load_balance=load_balance)


def _consumers_action(facts: Facts, consumers: list[str]) -> Action:
    ref = facts.ref
    if consumers:
        return config_set(ref.scope, ref.name, {LINKED_CONSUMERS_KEY: ",".join(consumers)}, skip_restart=True)
    return Action("config_unset", ref.scope, ref.name, keys=[LINKED_CONSUMERS_KEY], skip_restart=True)


def _reader_phrase(urls: Urls, facts: Facts) -> str:
    if not urls.reader_hosts:
        return "the primary (single pod)"
    names = ", ".join(h.split(".")[0] for h in urls.reader_hosts)
    return f"{len(urls.reader_hosts)} standby(s): {names}"


def decide_link(facts: Facts, consumer_text: str, *, reads: bool, load_balance: bool = False) -> Result:
    consumer = consumer_ref(consumer_text)
    if consumer == facts.ref:
        raise CommandError(f"cannot link postgres {facts.ref} to itself; name the app that uses it")
    urls = urls_for(facts, load_balance=load_balance)
    kv = {URL_KEY: urls.write}
    if reads:
        kv[READ_URL_KEY] = urls.read
    consumers = facts.consumers()
    actions = [config_set(consumer.scope, consumer.name, kv)]
    if str(consumer) not in consumers or facts.bucket.get(LINKED_CONSUMERS_KEY, "") != ",".join(consumers):
        if str(consumer) not in consumers:
            consumers.append(str(consumer))
        actions.append(_consumers_action(facts, consumers))
    writer = urls.writer_host.split(".")[0]
    message = f"linked {facts.ref} → {consumer}: {URL_KEY} (writer {writer})"
    if reads:
        message += f" + {READ_URL_KEY} ({_reader_phrase(urls, facts)})"
    data = {"provider": str(facts.ref), "consumer": str(consumer), "keys": sorted(kv),
            "writer": f"{urls.writer_host}:{facts.spec.port}",
            "readers": [f"{h}:{facts.spec.port}" for h in urls.reader_hosts] if reads else [],
            "linked_consumers": consumers}
    return Result(message, data, actions)


def decide_unlink(facts: Facts, consumer_text: str) -> Result:
    consumer = consumer_ref(consumer_text)
    consumers = facts.consumers()
    data = {"provider": str(facts.ref), "consumer": str(consumer)}
    if str(consumer) not in consumers:
        return Result(f"{consumer} is not linked to postgres {facts.ref}; nothing changed",
                      {**data, "changed": False, "linked_consumers": consumers})
    consumers.remove(str(consumer))
    actions = [
        Action("config_unset", consumer.scope, consumer.name, keys=[URL_KEY, READ_URL_KEY]),
        _consumers_action(facts, consumers),
    ]
    return Result(f"unlinked {consumer} from postgres {facts.ref}: {URL_KEY} and {READ_URL_KEY} removed",
                  {**data, "changed": True, "linked_consumers": consumers}, actions)


def consumer_refresh(facts: Facts, consumer_buckets: Mapping[str, Mapping[str, str]], *,
                     password: str | None = None, skip_restart: bool = False) -> list[Action]:
    """The writes that bring each linked consumer's URLs up to date (nothing for one that is).

    ``consumer_buckets`` maps each linked consumer (as listed) to its current bucket; a consumer
    whose bucket no longer has ``DATABASE_URL`` was unlinked by hand and is left alone.
    """
    urls = urls_for(facts, password=password)
    actions = []
    for text in facts.consumers():
        bucket = consumer_buckets.get(text)
        if bucket is None or not bucket.get(URL_KEY):
            continue
        want = {URL_KEY: urls.write}
        if bucket.get(READ_URL_KEY):
            want[READ_URL_KEY] = urls.read
        changed = {k: v for k, v in want.items() if bucket.get(k) != v}
        if changed:
            ref: Ref = consumer_ref(text)
            actions.append(Action("config_set", ref.scope, ref.name, kv=changed, skip_restart=skip_restart,
                                  summary=f"refreshed {', '.join(sorted(changed))} of {ref}"))
    return actions
