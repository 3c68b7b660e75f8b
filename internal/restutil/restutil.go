// Package restutil holds what the backends with REST clients of their own
// (ScaleIO, XtremIO) set up the same way: the password from a file or an
// environment variable (never from the configuration itself), the TLS
// settings, the HTTP client, durations from the configuration, and which
// client errors mean the storage is unreachable for now.
package restutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// ReadPassword returns the password from file (a trailing newline is
// dropped) or from the environment variable env; exactly one must be set.
func ReadPassword(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", errors.New("set passwordFile or passwordEnv, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("passwordFile: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", fmt.Errorf("passwordFile %s is empty", file)
		}
		return p, nil
	case env != "":
		p, ok := os.LookupEnv(env)
		if !ok || p == "" {
			return "", fmt.Errorf("passwordEnv: environment variable %s is not set", env)
		}
		return p, nil
	}
	return "", errors.New("passwordFile or passwordEnv is required")
}

// HTTPClient returns a client that verifies the server with the CA in
// caFile (or the system's roots), or not at all with insecure (the
// operator's explicit switch, for test servers), and gives up on one
// request after timeout.
func HTTPClient(caFile string, insecure bool, timeout time.Duration) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // operator's explicit switch
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// Duration is one duration setting: its configuration field, the text
// given (empty: Default), and where the parsed value goes.
type Duration struct {
	Field, Text string
	Default     time.Duration
	Dst         *time.Duration
}

// ParseDurations fills every Dst, refusing text that is not a positive
// duration.
func ParseDurations(ds ...Duration) error {
	for _, d := range ds {
		*d.Dst = d.Default
		if d.Text == "" {
			continue
		}
		v, err := time.ParseDuration(d.Text)
		if err != nil || v <= 0 {
			return fmt.Errorf("%s %q: want a positive duration such as 30s", d.Field, d.Text)
		}
		*d.Dst = v
	}
	return nil
}

// Transient reports whether a client error means the server could not be
// reached or did not answer in time, so the call may be retried.
func Transient(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// Rule maps the API errors it matches to a backend error.
type Rule[E error] struct {
	Match func(E) bool
	Err   error
}

// Classify wraps err with what was being done and with the backend error
// of the first rule that matches it (an API error of type E), or
// backends-neutral unavailable when the server was not reached (see
// Transient); unavailable is the backend's ErrUnavailable.
func Classify[E error](err error, what string, rules []Rule[E], unavailable error) error {
	if err == nil {
		return nil
	}
	var api E
	if errors.As(err, &api) {
		for _, r := range rules {
			if r.Match(api) {
				return fmt.Errorf("%s: %w: %v", what, r.Err, err)
			}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if Transient(err) {
		return fmt.Errorf("%s: %w: %v", what, unavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
