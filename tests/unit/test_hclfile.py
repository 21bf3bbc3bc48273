"""HCL files → blocks in Voodu's JSON shape → validated specs."""

from __future__ import annotations

import pytest

from voodu_postgres.domain.hcl import HCLSyntaxError, parse_blocks
from voodu_postgres.domain.spec import SpecError
from voodu_postgres.render.validate import load_text

FULL = '''
# a comment
postgres "clowk-lp" "db" {
  image    = "postgres:16"
  replicas = 3
  pg_config = {
    max_connections  = 200
    shared_buffers   = "256MB"
    log_connections  = true
    random_page_cost = 1.1
  }
  extensions = ["pgvector", "pg_stat_statements"]
  env = { TZ = "America/Sao_Paulo" }
  resources {
    limits {
      cpu    = "2"
      memory = "4Gi"
    }
  }
  probes {
    liveness {
      tcp_socket { port = 5432 }
      period = "10s"
    }
  }
}

postgres "solo" {
  pg_config = { work_mem = "16MB" }
}

deployment "clowk-lp" "web" {
  image = "ghcr.io/clowk/web:latest"
}
'''


def test_blocks_keep_labels_and_get_voodu_shape() -> None:
    blocks = parse_blocks(FULL)
    pg = [b for b in blocks if b.kind == "postgres"]
    assert [(b.scope, b.name) for b in pg] == [("clowk-lp", "db"), ("", "solo")]
    body = pg[0].body
    assert body["image"] == "postgres:16" and body["replicas"] == 3
    assert body["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert body["probes"] == {"liveness": {"tcp_socket": {"port": 5432}, "period": "10s"}}
    # a one-label block whose body is a single map must not be mistaken for two labels
    assert pg[1].body == {"pg_config": {"work_mem": "16MB"}}


def test_load_text_validates_postgres_and_keeps_others_aside() -> None:
    contents = load_text(FULL)
    assert [str(s.ref) for s in contents.specs] == ["clowk-lp/db", "solo"]
    assert contents.specs[0].pg_config["random_page_cost"] == 1.1
    assert [b.label for b in contents.others] == ["deployment clowk-lp/web"]


def test_repeated_nested_blocks_become_a_list() -> None:
    blocks = parse_blocks('postgres "a" "b" {\n inits { name = "x" }\n inits { name = "y" }\n}\n')
    assert blocks[0].body["inits"] == [{"name": "x"}, {"name": "y"}]


def test_empty_probes_block_is_an_empty_map() -> None:
    assert parse_blocks('postgres "a" "b" {\n probes {}\n}\n')[0].body["probes"] == {}


def test_scientific_numbers_are_numbers() -> None:
    assert parse_blocks('postgres "a" "b" { pg_config = { x = 1e3 } }\n')[0].body["pg_config"]["x"] == 1000.0


def test_syntax_error_is_one_line_with_position() -> None:
    with pytest.raises(HCLSyntaxError) as info:
        load_text('postgres "a" "b" {\n  replicas = \n}\n', source="bad.hcl")
    message = str(info.value)
    assert message.startswith("bad.hcl:") and "\n" not in message


def test_duplicate_blocks_are_reported() -> None:
    with pytest.raises(SpecError) as info:
        load_text('postgres "a" "b" {}\npostgres "a" "b" {}\n', source="f.hcl")
    assert "f.hcl: postgres a/b: declared more than once" in str(info.value)


def test_five_mistakes_in_one_file_give_five_lines() -> None:
    text = '''
postgres "shop" "db" {
  replicas  = 0
  port      = 70000
  user      = "app-user"
  pg_config = { "Max_Connections" = 10 }
}
postgres "shop" "cache" {
  replica = 2
}
'''
    with pytest.raises(SpecError) as info:
        load_text(text, source="voodu.hcl")
    lines = str(info.value).splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith("voodu.hcl: postgres shop/") for line in lines)
