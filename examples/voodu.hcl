# A 3-pod cluster: one primary and two streaming standbys.
# Try it:  voodu-postgres validate -f examples/voodu.hcl
postgres "demo" "db" {
  image    = "voodu-postgres-local:15"   # built locally by scripts/setup-docker.sh
  replicas = 3
  database = "appdata"
  user     = "appuser"

  pg_config = {
    max_connections  = 200
    shared_buffers   = "256MB"
    log_connections  = true
    random_page_cost = 1.1
  }

  env = {
    TZ = "UTC"
  }

  resources {
    limits {
      cpu    = "1"
      memory = "1Gi"
    }
  }
}

# Other block kinds are reported and left alone.
deployment "demo" "web" {
  image = "ghcr.io/example/web:latest"
}
