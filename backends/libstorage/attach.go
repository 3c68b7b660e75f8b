package libstorage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// instance is how a node names itself to the service's driver.
type instance struct {
	id     string
	fields map[string]string
}

// header renders the instance in the Libstorage-Instanceid format:
// DRIVER:SERVICE=ID[,FIELDS(url-encoded)].
func (b *Backend) header(in instance) string {
	s := b.driver + ":" + b.svc + "=" + in.id
	if len(in.fields) > 0 {
		q := url.Values{}
		for k, v := range in.fields {
			q.Set(k, v)
		}
		s += "," + q.Encode()
	}
	return s
}

// selfID returns this node's instance id once known, "" before.
func (b *Backend) selfID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.self == nil {
		return ""
	}
	return b.self.id
}

// instanceOf maps a CO node id to the instance the driver knows: this
// node's own id is the instance its driver computes; another node must be
// listed under nodes in the configuration. libStorage cannot say which
// instances exist, so any other node is unknown.
func (b *Backend) instanceOf(ctx context.Context, node string) (instance, error) {
	if node == "" {
		return instance{}, fmt.Errorf("%w: a node id is required", backends.ErrInvalid)
	}
	if strings.ContainsAny(node, ",=\n\r") {
		return instance{}, fmt.Errorf("%w: node id %q cannot name a libStorage instance (no ',' or '=')", backends.ErrInvalid, node)
	}
	if node == b.node {
		return b.selfInstance(ctx)
	}
	if id, ok := b.cfg.Nodes[node]; ok {
		return instance{id: id}, nil
	}
	return instance{}, fmt.Errorf("%w: node %q is not this node (%q) and not listed under nodes in backend %s's configuration, so its libStorage instance id is unknown", backends.ErrNodeNotFound, node, b.node, b.cfg.Name)
}

// attachmentOf returns the attachment of instance id, if any.
func attachmentOf(w *wireVolume, id string) (wireAttachment, bool) {
	for _, a := range w.Attachments {
		if a.InstanceID.ID == id {
			return a, true
		}
	}
	return wireAttachment{}, false
}

// Attach implements backends.Backend: POST ?attach with the TARGET node's
// instance id (rexray#913: never the plugin's own), after checking the
// request against the volume's attachments, since some drivers (vfs)
// enforce no single writer at all.
func (b *Backend) Attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	in, err := b.instanceOf(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	w, unlock, err := b.lockedGet(ctx, id)
	if w == nil {
		if err == nil {
			err = fmt.Errorf("attach %s: %w", id, backends.ErrNotFound)
		}
		return nil, err
	}
	defer unlock()
	v := b.toVolume(w)
	done, err := backends.CheckAttach(v, req)
	if errors.Is(err, backends.ErrConflict) {
		return nil, fmt.Errorf("attach %s to %s: %w%s", id, req.Node, err, b.onlyByHand(v, id, req.Node))
	}
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", id, req.Node, err)
	}
	if a, ok := attachmentOf(w, in.id); done || ok {
		return publishContext(in, a.DeviceName), nil
	}
	body := map[string]any{}
	local := ""
	if !b.nextDev.Driver.NextDevice.Ignore && b.stype == TypeBlock {
		name, devs, err := b.nextDeviceName(ctx, in, req.Node == b.node)
		if err != nil {
			return nil, err
		}
		body["nextDeviceName"] = name
		local = devs
	}
	if req.ByNode {
		if err := b.setByNode(id); err != nil {
			return nil, err
		}
	}
	p, _ := b.volPath(id)
	var out struct {
		Volume      wireVolume `json:"volume"`
		AttachToken string     `json:"attachToken"`
	}
	if _, err := b.c.call(ctx, request{method: http.MethodPost, path: p, query: "attach", instanceID: b.header(in), localDevices: local, body: body}, &out); err != nil {
		// The attach may have happened although the answer was lost.
		if w2, gerr := b.get(context.WithoutCancel(ctx), id); gerr == nil {
			if a, ok := attachmentOf(w2, in.id); ok {
				return publishContext(in, a.DeviceName), nil
			}
		}
		if req.ByNode {
			b.clearByNode(id)
		}
		return nil, fmt.Errorf("attach %s to %s: %w", id, in.id, err)
	}
	b.log.Info("volume attached", zap.String("id", id), zap.String("node", req.Node), zap.String("instance", in.id), zap.String("device", out.AttachToken))
	dev := out.AttachToken
	if a, ok := attachmentOf(&out.Volume, in.id); ok && a.DeviceName != "" {
		dev = a.DeviceName
	}
	return publishContext(in, dev), nil
}

// onlyByHand completes a conflicting attach's refusal. libStorage cannot
// say whether the holder can still write (no instance state, no fence), so
// unlike EBS and ScaleIO the volume never moves on its own: the message
// says so and names the operator's command.
func (b *Backend) onlyByHand(v *backends.Volume, id, node string) string {
	holder := "HOLDER"
	for _, a := range v.Attachments {
		if a.Node != node {
			holder = a.Node
			break
		}
	}
	return fmt.Sprintf(". libStorage cannot prove that node %s stopped writing, so the volume moves only by hand: once %s is powered off or fenced, run csi-libstorage force-detach --volume %s/%s --node %s --yes-the-node-is-dead",
		holder, holder, b.Name(), id, holder)
}

func publishContext(in instance, dev string) map[string]string {
	pc := map[string]string{PublishInstanceID: in.id}
	if dev != "" {
		pc[PublishDeviceName] = dev
	}
	return pc
}

// nextDeviceName picks a device name for an attach to in: the first name
// of the driver's rule that no volume the server knows on that instance
// uses and, when the target is this node, that is not a local device. It
// also returns the Libstorage-Localdevices header for this node.
func (b *Backend) nextDeviceName(ctx context.Context, in instance, self bool) (string, string, error) {
	nd := b.nextDev.Driver.NextDevice
	used := map[string]bool{}
	ws, err := b.list(ctx)
	if err != nil {
		return "", "", err
	}
	for _, w := range ws {
		if a, ok := attachmentOf(w, in.id); ok && a.DeviceName != "" {
			used[a.DeviceName] = true
		}
	}
	header := ""
	if self {
		ents, _ := os.ReadDir(b.cfg.DevDir)
		var local []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), nd.Prefix) {
				p := "/dev/" + e.Name()
				used[p] = true
				local = append(local, p+"::")
			}
		}
		sort.Strings(local)
		header = b.driver + "=" + strings.Join(local, ",")
	}
	for _, c := range letters(nd.Pattern) {
		name := "/dev/" + nd.Prefix + string(c)
		// The first letter is the root disk on every cloud the block
		// drivers serve.
		if c == 'a' || used[name] {
			continue
		}
		return name, header, nil
	}
	return "", "", fmt.Errorf("%w: no free device name of %s%s on instance %s", backends.ErrLimit, nd.Prefix, nd.Pattern, in.id)
}

// letters expands a one-class pattern such as "[a-z]" or "[f-p]"; other
// patterns give a-z.
func letters(p string) []rune {
	var out []rune
	if len(p) == 5 && p[0] == '[' && p[2] == '-' && p[4] == ']' && p[1] <= p[3] {
		for c := rune(p[1]); c <= rune(p[3]); c++ {
			out = append(out, c)
		}
		return out
	}
	for c := 'a'; c <= 'z'; c++ {
		out = append(out, c)
	}
	return out
}

// Detach implements backends.Backend. The server detaches every instance
// whoever asks, so a detach is only sent when node really holds the
// volume, with node's own instance id, and other holders of a shared
// volume are attached again right after.
func (b *Backend) Detach(ctx context.Context, id, node string) error {
	return b.detach(ctx, id, node, false)
}

func (b *Backend) detach(ctx context.Context, id, node string, force bool) error {
	in, err := b.instanceOf(ctx, node)
	if err != nil {
		return err
	}
	w, unlock, err := b.lockedGet(ctx, id)
	if w == nil {
		return err
	}
	defer unlock()
	if _, ok := attachmentOf(w, in.id); !ok {
		if node == b.node {
			b.clearByNode(id)
		}
		return nil
	}
	p, _ := b.volPath(id)
	if _, err := b.c.call(ctx, request{method: http.MethodPost, path: p, query: "detach", instanceID: b.header(in), body: detachBody(force)}, nil); err != nil {
		return fmt.Errorf("detach %s from %s: %w", id, in.id, err)
	}
	if node == b.node {
		b.clearByNode(id)
	}
	for _, a := range w.Attachments {
		if a.InstanceID.ID == in.id {
			continue
		}
		b.log.Warn("the server detached every holder of a shared volume; attaching the others again",
			zap.String("id", id), zap.String("instance", a.InstanceID.ID))
		body := map[string]any{}
		if a.DeviceName != "" {
			body["nextDeviceName"] = a.DeviceName
		}
		other := instance{id: a.InstanceID.ID}
		if _, err := b.c.call(ctx, request{method: http.MethodPost, path: p, query: "attach", instanceID: b.header(other), body: body}, nil); err != nil {
			return fmt.Errorf("re-attach %s to %s after the server detached it: %w", id, other.id, err)
		}
	}
	b.log.Info("volume detached", zap.String("id", id), zap.String("node", node), zap.String("instance", in.id))
	return nil
}

// ForceDetach implements backends.ForceDetacher: the operator's way to
// take a volume from a node that is dead. It detaches with the holder's
// instance id and force set (ebs: a forced EC2 detach).
func (b *Backend) ForceDetach(ctx context.Context, id, node string) error {
	b.log.Warn("force-detach requested by an operator", zap.String("id", id), zap.String("node", node))
	return b.detach(ctx, id, node, true)
}

func detachBody(force bool) map[string]any {
	if force {
		return map[string]any{"force": true}
	}
	return map[string]any{}
}
