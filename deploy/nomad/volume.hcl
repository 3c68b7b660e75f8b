# A volume for the example job (example-postgres.nomad.hcl):
#
#   nomad volume create deploy/nomad/volume.hcl
#
# plugin_id is the csi_plugin id of the plugin jobs, not the CSI driver name.
# parameters are the plugin's CreateVolume parameters: backend, fsType,
# preallocate, size, newfstype, overwritefs; an unknown key is refused.
# fs_type in mount_options is the filesystem the node asks for and must agree
# with fsType.
id        = "pg-data"
name      = "pg-data"
type      = "csi"
plugin_id = "csi-libstorage"

capacity_min = "1GiB"
capacity_max = "2GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

capability {
  access_mode     = "single-node-reader-only"
  attachment_mode = "file-system"
}

mount_options {
  fs_type     = "ext4"
  mount_flags = ["noatime"]
}

parameters {
  backend = "shared"
  fsType  = "ext4"
}
