package ec2sim

import (
	"crypto/sha256"
	"fmt"
)

// PrivateDNSName is the private IPv4 DNS name the server gives instance id
// in region: "ip-10-0-X-Y.ec2.internal" in us-east-1 and
// "ip-10-0-X-Y.<region>.compute.internal" elsewhere, as EC2 names
// instances (IP-based naming), with X and Y derived from the id. IMDS
// answers it as local-hostname, and DescribeInstances filters on it as
// private-dns-name. It is what EKS names a Kubernetes node.
func PrivateDNSName(region, id string) string {
	h := sha256.Sum256([]byte(id))
	host := fmt.Sprintf("ip-10-0-%d-%d", h[0], 1+h[1]%254)
	if region == "us-east-1" {
		return host + ".ec2.internal"
	}
	return host + "." + region + ".compute.internal"
}
