package ec2sim

// Devices makes simulated EBS volumes visible as block devices. The Server
// calls it, with its lock held, when an asynchronous transition completes:
//
//   - Attach when an attachment goes attaching→attached. An error leaves
//     the attachment in "attaching" and is recorded (Server.DeviceErrors).
//   - Detach when a detaching attachment disappears (only if Attach
//     succeeded for it).
//   - Resize when a ModifyVolume that grows the volume reaches "optimizing"
//     (the volume may or may not be attached).
//   - Delete when a deleted volume disappears ("deleting"→gone).
//
// Errors from Detach, Resize and Delete are recorded but do not change the
// simulated EC2 state. If the implementation is also an io.Closer,
// Server.Close closes it.
type Devices interface {
	Attach(instanceID, volumeID, device string, sizeBytes int64) error
	Detach(instanceID, volumeID string) error
	Resize(volumeID string, sizeBytes int64) error
	Delete(volumeID string) error
}

// NVMeSerial returns the serial an EBS volume has as an NVMe device on a
// Nitro instance: the volume id without the dash ("vol-0ab…" → "vol0ab…").
func NVMeSerial(volumeID string) string {
	if len(volumeID) > 4 && volumeID[:4] == "vol-" {
		return "vol" + volumeID[4:]
	}
	return volumeID
}

// ByIDName returns the /dev/disk/by-id link name udev creates for an EBS
// volume on Nitro: "nvme-Amazon_Elastic_Block_Store_vol0ab…".
func ByIDName(volumeID string) string {
	return "nvme-Amazon_Elastic_Block_Store_" + NVMeSerial(volumeID)
}
