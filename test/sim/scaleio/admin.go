package scaleiosim

import (
	"io"
	"net/http"
	"strings"
)

// AdminHandler serves the test hooks over HTTP for a gateway that runs as
// a process of its own (cmd/scaleiosim):
//
//	PUT /sdcs/<id or GUID>/state   body: Connected or Disconnected
func (s *Server) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/sdcs/")
		sdc, verb, _ := strings.Cut(rest, "/")
		if !ok || verb != "state" || r.Method != http.MethodPut {
			http.Error(w, "unknown admin request", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 32))
		if err := s.SetSDCState(sdc, strings.TrimSpace(string(body))); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
