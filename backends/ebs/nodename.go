package ebs

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Kubernetes node names on EC2 (EKS, kOps, most installers) are the
// instance's private DNS name ("ip-10-0-1-2.ec2.internal", or
// "i-0123….ec2.internal" with resource-based names). The controller maps
// such a node id to its instance with DescribeInstances' private-dns-name
// filter, so the node need not tag its instance with its node id, which
// would take ec2:CreateTags: with the shipped DaemonSet
// (--node-id=$(KUBE_NODE_NAME)) the node needs no EC2 permission at all.

// instanceByDNSName returns the instance whose private DNS name is node,
// "" when there is none.
func (b *Backend) instanceByDNSName(ctx context.Context, node string) (string, error) {
	if !strings.Contains(node, ".") {
		return "", nil // not a DNS name (a Mesos agent id)
	}
	out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("private-dns-name"), Values: []string{escapeFilter(strings.ToLower(node))}},
	}})
	if err != nil {
		return "", mapErr(err, "find the instance named "+node)
	}
	var found []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			found = append(found, aws.ToString(in.InstanceId))
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: node %q is the private DNS name of several instances: %v", backends.ErrConflict, node, found)
}

// namedByHost reports whether node is this instance's private DNS name
// (IMDS local-hostname), which the controller finds without a tag.
func (b *Backend) namedByHost(ctx context.Context, node string) bool {
	host, err := b.metadata(ctx, "local-hostname")
	return err == nil && host != "" && strings.EqualFold(host, node)
}
