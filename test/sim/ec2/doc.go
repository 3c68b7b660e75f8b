// Package ec2sim is a stateful, in-process EC2 + IMDSv2 test server for
// the AWS EBS backend. Tests point the real aws-sdk-go-v2 clients at it:
// service/ec2 through ec2.Options.BaseEndpoint (static credentials; the
// SigV4 signature is not checked) and feature/ec2/imds through
// imds.Options.Endpoint = Server.IMDSURL(instanceID).
//
// # What it models
//
//   - The EC2 Query protocol as aws-sdk-go-v2 sends it: form-encoded
//     Action/Version, flattened lists (VolumeId.N, Filter.N.Value.M,
//     TagSpecification.N.Tag.M.Key), XML responses in the
//     2016-11-15 namespace with requestId, and the EC2 error document
//     <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>
//     (HTTP 400; 503 for RequestLimitExceeded/ServiceUnavailable; 500 for
//     InternalError; 412 for DryRunOperation).
//   - Actions: CreateVolume, DeleteVolume, DescribeVolumes, AttachVolume,
//     DetachVolume, DescribeInstances, CreateTags, DeleteTags, ModifyVolume,
//     DescribeVolumesModifications, CreateSnapshot, DeleteSnapshot,
//     DescribeSnapshots, DescribeAvailabilityZones. Any other Action is
//     InvalidAction.
//   - Asynchronous state, advanced by timers after Options.StateDelay:
//     volume creating→available→in-use, deleting→gone (then
//     InvalidVolume.NotFound); attachment attaching→attached and
//     detaching→gone (the attachment disappears; "detached" is never
//     reported); snapshot pending→completed; modification
//     modifying→optimizing→completed (the new size/type/iops/throughput
//     take effect at "optimizing").
//   - Errors: InvalidVolume.NotFound, InvalidInstanceID.NotFound,
//     InvalidSnapshot.NotFound, Invalid{Volume,Instance,Snapshot}ID.Malformed,
//     VolumeInUse (delete or attach of an in-use volume),
//     InvalidVolume.ZoneMismatch, InvalidParameterValue "Attachment point
//     … is already in use" (device name taken on the instance, including
//     by an attaching or detaching volume), IncorrectState,
//     InvalidAttachment.NotFound, IdempotentParameterMismatch,
//     IncorrectModificationState, InvalidVolumeModification.NotFound,
//     InvalidParameterCombination, MissingParameter, InvalidPaginationToken.
//   - CreateVolume ClientToken idempotency: the same token with the same
//     parameters (tags compared order-insensitively) returns the same
//     volume (reported as "deleted" once it is gone); any difference is
//     IdempotentParameterMismatch. Tokens never expire.
//   - Volume types standard/gp2/gp3/io1/io2/st1/sc1 with size limits,
//     gp3 defaults (3000 IOPS, 125 MiB/s), io1/io2 requiring Iops, and
//     Iops/Throughput rejected for types that do not take them.
//   - Filters (values ORed, '*' and '?' wildcards; filters ANDed; unknown
//     filter names rejected): volumes by tag:KEY, tag-key, tag-value,
//     volume-id, status, availability-zone, volume-type, size, snapshot-id,
//     encrypted, attachment.{instance-id,device,status,delete-on-termination};
//     snapshots by tag:KEY, tag-key, tag-value, snapshot-id, volume-id,
//     status, description, owner-id, volume-size, encrypted. MaxResults and
//     NextToken paging on DescribeVolumes (5–500) and DescribeSnapshots
//     (5–1000); MaxResults together with explicit ids is rejected.
//   - Instances are fixed at New (id, AZ, type, optional root device with
//     its own root volume). DescribeInstances reports each attachment in
//     blockDeviceMapping with its state, so a device-name allocator sees
//     names in use. Instance states (lifecycle.go): running by default;
//     StopInstance (stopping→stopped, volumes stay attached),
//     StartInstance (pending→running), TerminateInstance
//     (shutting-down→terminated, then volumes detach; DeleteOnTermination
//     ones, the root volume, are deleted) and SetInstanceState; the state
//     and its code appear in DescribeInstances and its instance-state-name
//     filter; AttachVolume to a shutting-down or terminated instance is
//     IncorrectInstanceState. AdminHandler serves these hooks over HTTP.
//   - Test hooks: FailNext (next N calls of an action fail with a code),
//     HoldAttach/HoldDetach (attachments stick in attaching/detaching; a
//     forced detach overrides HoldDetach and a forced detach of an
//     attaching volume is allowed), Calls/CallCounts per action,
//     DeviceErrors, Volumes.
//   - Devices: real block devices on attach through the Devices interface;
//     LoopDevices gives each volume a sparse image and a loop device with
//     the Nitro by-id link nvme-Amazon_Elastic_Block_Store_vol…, and
//     Serial stands in for the NVMe serial.
//   - Each instance has a private DNS name (PrivateDNSName), answered by
//     IMDS as local-hostname and matched by DescribeInstances'
//     private-dns-name filter.
//   - IMDSv2 per instance (Server.IMDS / Server.IMDSURL): token PUT with
//     TTL, token-protected GETs of instance-id, placement, instance-type,
//     block-device-mapping and the instance identity document. IMDSv1
//     requests get 401.
//
// # What it does NOT model
//
//   - Authentication: signatures and KMS key validity are not checked
//     (any KmsKeyId is accepted). Authorization only as Restrict gives it:
//     a caller (the access key id its signature names) may call the
//     actions listed and gets UnauthorizedOperation for the others.
//   - Throttling, quotas and limits (RequestLimitExceeded,
//     VolumeLimitExceeded, AttachmentLimitExceeded, MaxIOPSLimitExceeded)
//     except through FailNext. The per-volume limit of
//     MaxModificationsPerDay modifications in a rolling 24 hours is
//     modelled (VolumeModificationRateExceeded; AgeModifications moves
//     time on).
//   - Snapshot contents: a volume created from a snapshot gets the
//     snapshot's size but starts with an empty image; snapshots are not
//     incremental and never enter the "error" state.
//   - Multi-Attach (MultiAttachEnabled=true is rejected), AvailabilityZoneId,
//     Outposts, fast snapshot restore, snapshot archive/lock, volume
//     initialization rate, io2 Block Express distinctions, a volume
//     entering "error" by itself (SetVolumeError puts it there), and
//     instance types beyond their attachment limits, terminated instances
//     disappearing from DescribeInstances after an hour, hibernation.
//   - Instance-side device naming: the requested Device name is recorded
//     and checked for collisions but no /dev/xvdXY node is created; the
//     device is reachable only through the by-id link (Nitro behaviour).
//   - IMDS beyond the paths listed on Server.IMDS (no network/, iam/,
//     user-data, spot or events data; IMDS block-device-mapping is the
//     launch-time mapping only), hop limits, and X-Forwarded-For rejection.
//   - Exact AWS error message texts: codes are exact, messages are close
//     paraphrases (those the EBS CSI driver matches on, such as
//     "already in use", are kept).
package ec2sim
