# PostgreSQL on the pg-data volume (volume.hcl). Create the volume first:
#
#   nomad volume create deploy/nomad/volume.hcl
#   nomad job run deploy/nomad/example-postgres.nomad.hcl
job "pg-example" {
  datacenters = ["dc1"]
  type        = "service"

  group "db" {
    count = 1

    volume "data" {
      type            = "csi"
      source          = "pg-data"
      read_only       = false
      access_mode     = "single-node-writer"
      attachment_mode = "file-system"
    }

    network {
      port "db" {
        static = 5432
      }
    }

    task "postgres" {
      driver = "docker"

      config {
        image = "docker.io/library/postgres:16.4"
        ports = ["db"]
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/postgresql/data"
      }

      env {
        POSTGRES_PASSWORD = "example-only-change-me"
        PGDATA            = "/var/lib/postgresql/data/pgdata"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
