# csi-libstorage node plugin for Nomad (>= 1.3): a system job, one instance
# on every client that may run tasks with a volume.
#
#   nomad job run deploy/nomad/plugin-node.nomad.hcl
#
# Driver: docker with privileged = true. The plugin attaches loop devices,
# runs mkfs and mounts filesystems for Nomad, so it needs CAP_SYS_ADMIN and
# the host's devices. Nomad itself bind-mounts mount_dir and its staging and
# publish directories into a CSI plugin's container with shared propagation,
# so the mounts the plugin makes reach the host and the tasks. Two more bind
# mounts are ours:
#   /dev    the host's /dev: loop devices attached at run time appear there,
#           not in the copy of /dev a privileged container starts with;
#   pool    the shared file-backend directory, at the same path as on the host.
#
# The client's docker plugin block needs
#   allow_privileged = true
#   volumes { enabled = true }
#
# raw_exec would work as well (the binary then runs in the host's
# namespaces as root), but it is off by default, gives the job the whole
# host with no container boundary, and needs the binary and mkfs tools
# installed on every client. exec does not work: its device cgroup and
# chroot hide /dev/loop*. Hence docker.
#
# The plugin image, the same in both plugin jobs: after
# `make image IMAGE=REGISTRY/csi-libstorage:TAG` and a push, run
#   nomad job run -var image=REGISTRY/csi-libstorage:TAG <this file>
variable "image" {
  type    = string
  default = "registry.example.com/csi-libstorage/csi-libstorage:v0.1.0"
}

job "csi-libstorage-node" {
  datacenters = ["dc1"]
  type        = "system"

  group "node" {
    task "plugin" {
      driver = "docker"

      config {
        image      = var.image
        privileged = true
        args = [
          "--mode=node",
          # The id Nomad passes back in ControllerPublish, and the one an
          # operator gives to force-detach: the Nomad node name.
          "--node-id=${node.unique.name}",
          "--endpoint=unix:///csi/csi.sock",
          "--config=/local/config.yaml",
          "--log-format=json",
        ]

        mount {
          type   = "bind"
          source = "/dev"
          target = "/dev"
        }

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
        type      = "node"
        mount_dir = "/csi"
      }

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
