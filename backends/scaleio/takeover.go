package scaleio

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
)

// Automatic failover (docs/backends/scaleio.md#failover). Unmapping a
// volume from an SDC is a fence the storage enforces: from then on that
// SDC's I/O to the volume is refused, even if the host comes back. So a
// volume mapped to another SDC may be taken without proof that the host is
// dead; what the rule below protects is the holder's availability, not the
// data: a holder is unmapped only when the gateway has reported its SDC
// disconnected from the MDM, without a break, for the grace period, so a
// live node is not fenced over a short network blip.

// ProofSDCDisconnected is the proof reported with backends.Takeover.
const ProofSDCDisconnected = "sdc-disconnected"

// DefaultDisconnectGrace is SDCDisconnectGrace's default.
const DefaultDisconnectGrace = 30 * time.Second

const sdcDisconnected = "Disconnected"

// parseGrace reads SDCDisconnectGrace: a duration, or "off".
func parseGrace(s string) (time.Duration, error) {
	switch s {
	case "":
		return DefaultDisconnectGrace, nil
	case "off":
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("sdcDisconnectGrace %q: want a duration such as 30s, 0s to take over at once, or off", s)
	}
	return d, nil
}

// offFor records the state the gateway reported for SDC id now and returns
// how long this process has seen it disconnected without a break (zero
// when it is connected, or seen disconnected for the first time). A
// restarted plugin starts counting again: the grace is only ever longer,
// never shorter, than configured.
func (b *Backend) offFor(id, state string, now time.Time) time.Duration {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	if state != sdcDisconnected {
		delete(b.offSince, id)
		return 0
	}
	since, ok := b.offSince[id]
	if !ok {
		b.offSince[id] = now
		return 0
	}
	return now.Sub(since)
}

// takeOver unmaps volume id from every other SDC it is mapped to, when the
// gateway has reported each of them disconnected for the grace period; it
// returns nil once they are unmapped, ErrConflict (FAILED_PRECONDITION, so
// the CO retries) naming the SDC and its state otherwise. The caller holds
// the volume's lock and maps the volume to me afterwards.
func (b *Backend) takeOver(ctx context.Context, id string, raw *volume, system string, me *sdc, to string) error {
	list, err := b.c.sdcs(ctx, system)
	if err != nil {
		return mapErr(err, "list SDCs")
	}
	byID := map[string]sdc{}
	for _, s := range list {
		byID[s.ID] = s
	}
	now := time.Now()
	var fence []sdc
	for _, m := range raw.MappedSdcInfo {
		if m.SdcID == me.ID {
			continue
		}
		h, ok := byID[m.SdcID]
		if !ok {
			h = sdc{ID: m.SdcID, MdmConnectionState: "not listed by the gateway"}
		}
		off := b.offFor(h.ID, h.MdmConnectionState, now)
		if h.MdmConnectionState != sdcDisconnected || b.grace < 0 || off < b.grace {
			return b.refusal(id, h, off, to)
		}
		fence = append(fence, h)
	}
	for _, h := range fence {
		b.log.Warn("the volume's holder SDC is disconnected: unmapping it (a fence) to map the volume elsewhere",
			zap.String("id", id), zap.String("sdc", h.ID), zap.String("from", strings.ToUpper(h.SdcGUID)), zap.String("to", to))
		err := b.c.volumeAction(ctx, id, "removeMappedSdc", map[string]string{"sdcId": h.ID})
		if err != nil && !isAPI(err, msgNotMapped) {
			return mapErr(err, fmt.Sprintf("unmap volume %s from the disconnected SDC %s", id, h.ID))
		}
		fault.Point("scaleio.takeover.unmapped")
		b.report(backends.Takeover{Backend: b.name, VolumeID: id, From: nodeOf(h), To: to, Proof: ProofSDCDisconnected})
	}
	return nil
}

// nodeOf names an SDC the way the CO knows its node: by its GUID.
func nodeOf(s sdc) string {
	if s.SdcGUID != "" {
		return strings.ToUpper(s.SdcGUID)
	}
	return s.ID
}

// refusal says who holds the volume, in what state, and when (if ever) it
// moves on its own.
func (b *Backend) refusal(id string, h sdc, off time.Duration, to string) error {
	who := "SDC " + h.ID
	if h.SdcGUID != "" {
		who += " (GUID " + strings.ToUpper(h.SdcGUID)
		if h.Name != "" {
			who += ", name " + h.Name
		}
		who += ")"
	}
	var when string
	switch {
	case b.grace < 0:
		when = "automatic takeover is off (sdcDisconnectGrace: off), so it moves only by hand"
	case h.MdmConnectionState == sdcDisconnected:
		when = fmt.Sprintf("it has been seen disconnected for %s and moves to node %s on a retry once that reaches %s", off.Round(time.Millisecond), to, b.grace)
	default:
		when = fmt.Sprintf("it moves to node %s on its own only once the gateway reports that SDC disconnected for %s", to, b.grace)
	}
	return fmt.Errorf("%w: volume %s is mapped to %s, whose MDM connection state is %s: %s. "+
		"If that host is dead, unmap it by hand: csi-libstorage force-detach --volume %s/%s --node %s --yes-the-node-is-dead",
		backends.ErrConflict, id, who, h.MdmConnectionState, when, b.name, id, nodeOf(h))
}

func (b *Backend) report(t backends.Takeover) {
	if b.events != nil {
		b.events.Takeover(t)
	}
}

// ForceDetach implements backends.ForceDetacher: the operator's unmap of
// a node the gateway still reports connected. An unmap is already final
// on ScaleIO, so it is Detach, logged as the operator's action.
func (b *Backend) ForceDetach(ctx context.Context, id, node string) error {
	b.log.Warn("force-detach requested by an operator", zap.String("id", id), zap.String("node", node))
	return b.Detach(ctx, id, node)
}
