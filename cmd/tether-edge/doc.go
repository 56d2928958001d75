// Command tether-edge is the Tether broker: devices connect to it over
// mTLS, people connect with bearer tokens, and it splices what policy
// allows.
//
//	tether-edge --config edge.yaml [--listen ADDR]   serve
//	tether-edge token                                 print a new client token and its token_sha256 line
//	tether-edge dev --dir DIR [--listen ADDR] [--device ID]
//	                                                  create a dev set-up once, then serve it
//	tether-edge dev --cluster N --dir DIR [--device ID]
//	                                                  write a trial of N edges behind HAProxy once,
//	                                                  and print the commands that start it
//	tether-edge --version
//
// # Configuration
//
// Unknown keys and invalid values are errors that name the file, the line
// and the key. Paths are relative to the configuration file. Every key,
// with its unit and default, is described in docs/edge.md.
//
//	listen: "0.0.0.0:8443"             # one TLS port for devices and clients
//	tls: {cert: edge.crt, key: edge.key}
//	device_ca: ca.crt                  # signs device certificates (ClientAuth EKU required)
//	revoked: revoked.txt               # optional; hex serials, one per line; re-read on SIGHUP
//	clients:
//	  - name: ops
//	    token_sha256: "<64 hex chars>" # from `tether-edge token`; tokens are never stored
//	    devices: ["*"]                 # globs on device IDs
//	    allow:
//	      tcp: ["127.0.0.1:*", "*:22", "10.0.0.*:8000-8100"]
//	      udp: ["127.0.0.1:53"]
//	      pty: true                    # shells and commands on a terminal
//	      exec: true                   # commands without a terminal (tether exec); off by default
//	      reload: true                 # ask the device to reload its config
//	      files: false                 # file transfers: true, or {read: [globs], write: [globs]}
//	audit_log: audit.jsonl             # JSON lines; "-" for stdout (the default); may be a named pipe
//	metrics_listen: "127.0.0.1:9090"   # optional Prometheus /metrics
//	log_level: info                    # debug, info, warn or error
//	state_dir: /var/lib/tether-edge    # a single edge keeps web sign-outs, exchanged ID tokens and devices seen leaving here (default: memory)
//	keepalive: {interval: 10s, timeout: 30s}  # 0 keeps the transport's default
//	limits:                            # every key optional; 0 keeps the default
//	  max_streams_per_client: 64       # concurrent streams of one client session (at most 128)
//	  max_streams_per_device: 128      # concurrent streams to one device (at most 128)
//	  max_streams_per_client_per_device: 64  # one client's share of a device (default: half of the above)
//	  handshake_timeout: 15s           # TLS handshake, and request headers (slowloris)
//	  open_timeout: 15s                # opening message, and the device's answer
//	  first_stream_timeout: 30s        # a client session with no stream by then is closed
//	  max_header_bytes: 16384
//	  upgrade_rate: 200                # upgrades per second per source IP ...
//	  upgrade_burst: 2000              # ... with this burst; beyond: 429
//	  stall_timeout: 60s               # reset a stream whose reader made no progress
//	  audit_timeout: 5s                # a PTY or file-transfer open waits this long for its audit record
//	  rejected_audit_rate: 20          # refused-upgrade audit records per second ...
//	  rejected_audit_burst: 200        # ... with this burst; the rest are counted
//	  drain_timeout: 30s               # SIGTERM: wait this long for open streams
//	devices:                           # optional: the device list's disconnected devices
//	  last_seen_ttl: 168h              # how long a device that left stays listed offline; 0 keeps none
//	  last_seen_max: 100000            # a single edge keeps at most this many
//	cluster:                           # optional: one of several edges behind a load balancer
//	  edge_id: edge-1                  # the CN of peer_cert
//	  peer_listen: "0.0.0.0:8444"      # other edges' peer sessions; never the public port
//	  advertise: https://10.0.0.1:8444 # what other edges dial (default: from peer_listen)
//	  peer_ca: peer-ca.crt             # a CA of its own, never the device CA
//	  peer_cert: {cert: peer.crt, key: peer.key}   # ServerAuth and ClientAuth
//	  nats:                            # exactly one of embedded and url
//	    embedded: {listen: "0.0.0.0:6222", routes: ["10.0.0.2:6222", "10.0.0.3:6222"], store: nats}
//	    # url: nats://n1:4222,nats://n2:4222   creds: edge.creds   ca: nats-ca.crt
//	  replicas: 3                      # 1, 3 or 5; default 3 with 3 or more embedded edges, else 1
//	  takeover_hold: 30s
//
// Without a cluster section the edge is a single edge and runs no NATS.
// With one, it starts NATS (embedded, its routes on mTLS with the peer
// certificates, or a connection to an external cluster) and the device
// presence; a cluster state that cannot be reached is retried in the
// background while the edge serves its own devices. docs/cluster.md
// describes clusters.
//
// Everything is denied unless a client's entry allows it: the device must
// match one of its device globs, and the stream type (and, for TCP and UDP,
// the canonical target) must be granted.
//
// # Audit log
//
// One JSON object per line. Records go through a queue to a writer of
// their own, so a stuck sink (a pipe whose reader stopped) holds up no
// connection: TCP and UDP streams go on (their records dropped, and
// counted, once the queue is full), while PTY and file-transfer opens are
// refused with "audit log unavailable" after audit_timeout, since they must
// not run unaudited. A stuck sink is logged once, and so is its recovery.
//
// # Signals
//
// SIGHUP re-reads clients, the revocation list, the device CA file,
// recording and auth (with its user CA file; added or removed, too). A
// device whose serial is now revoked, or whose certificate the device CA
// file no longer trusts, is disconnected at once; a client session
// whose token was removed or changed, or whose client may no longer reach
// its device, is closed (and audited), as is a person's session whose
// certificate or JWT the new auth section no longer accepts; open streams
// the new policy refuses are closed too. Other sessions go on. A
// configuration that no longer parses is logged and the running policy
// kept. SIGHUP also reopens the audit log, for rotation by rename. listen,
// keepalive, limits, web and cluster need a restart; the tls certificate
// and key files are read again at the first handshake after either
// changes, without a signal. SIGTERM and SIGINT stop accepting (devices, clients and
// peers), send GoAway to every device, wait for the open streams up to
// drain_timeout, then leave the cluster state and stop NATS, and exit 0.
package main
