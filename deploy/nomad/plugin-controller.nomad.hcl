# csi-libstorage controller plugin for Nomad (>= 1.3).
#
#   nomad job run deploy/nomad/plugin-controller.nomad.hcl
#
# One instance. It serves CreateVolume and DeleteVolume, ControllerPublish
# and ControllerUnpublish (the plugin has PUBLISH_UNPUBLISH_VOLUME, so Nomad
# publishes a volume to a node before the node stages it), snapshots and
# expansion. With the file backend it works in the shared pool, so it mounts
# the pool at the same path as on the host. It needs no privileges.
#
# Docker driver: the client's docker plugin block needs
#   volumes { enabled = true }   (bind mounts from the host)
# The plugin image, the same in both plugin jobs: after
# `make image IMAGE=REGISTRY/csi-libstorage:TAG` and a push, run
#   nomad job run -var image=REGISTRY/csi-libstorage:TAG <this file>
variable "image" {
  type    = string
  default = "registry.example.com/csi-libstorage/csi-libstorage:v0.1.0"
}

job "csi-libstorage-controller" {
  datacenters = ["dc1"]
  type        = "service"

  group "controller" {
    count = 1

    task "plugin" {
      driver = "docker"

      config {
        image = var.image
        args = [
          "--mode=controller",
          "--endpoint=unix:///csi/csi.sock",
          "--config=/local/config.yaml",
          "--log-format=json",
        ]

        mount {
          type   = "bind"
          source = "/var/lib/csi-libstorage/pool"
          target = "/var/lib/csi-libstorage/pool"
          bind_options {
            propagation = "rslave"
          }
        }
      }

      csi_plugin {
        id        = "csi-libstorage"
        type      = "controller"
        mount_dir = "/csi"
      }

      # The same configuration as the node plugins (plugin-node.nomad.hcl).
      template {
        destination = "local/config.yaml"
        data        = <<EOT
backends:
  - name: shared
    type: file
    dir: /var/lib/csi-libstorage/pool
    shared: true   # refuse to start unless the pool is an NFS/CephFS/... mount
allowOverwrite: false
EOT
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
