// The etcd Go client (clientv3 3.4) against MetaStore: put/get and a prefix range, a txn with
// compare/then/else, a watch receiving live events, leases (kept alive, and expiring with their
// key), a mutex and an election from the concurrency package. Every line printed is
// deterministic, so examples/go/expected.txt holds the whole output.
//
// Endpoints: ETCD_ENDPOINTS (comma-separated, default 127.0.0.1:2379).
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

const prefix = "examples/go/"

func main() {
	endpoints := strings.Split(envOr("ETCD_ENDPOINTS", "127.0.0.1:2379"), ",")
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	must(err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A clean slate: earlier runs left their keys under the prefix.
	_, err = cli.Delete(ctx, prefix, clientv3.WithPrefix())
	must(err)

	kv(ctx, cli)
	txn(ctx, cli)
	watch(ctx, cli)
	leases(ctx, cli)
	mutex(ctx, cli)
	election(ctx, cli)
	fmt.Println("done")
}

func kv(ctx context.Context, cli *clientv3.Client) {
	_, err := cli.Put(ctx, prefix+"greeting", "hello")
	must(err)
	resp, err := cli.Get(ctx, prefix+"greeting")
	must(err)
	fmt.Printf("get %s = %s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)

	for i, name := range []string{"a", "b", "c", "d"} {
		_, err := cli.Put(ctx, prefix+"fruit/"+name, fmt.Sprint(i+1))
		must(err)
	}
	// A range over the prefix, at most 3 keys, sorted by key.
	resp, err = cli.Get(ctx, prefix+"fruit/", clientv3.WithPrefix(), clientv3.WithLimit(3),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	must(err)
	fmt.Printf("range %sfruit/ limit 3: count=%d more=%v\n", prefix, resp.Count, resp.More)
	for _, kv := range resp.Kvs {
		fmt.Printf("  %s = %s\n", kv.Key, kv.Value)
	}
}

func txn(ctx context.Context, cli *clientv3.Client) {
	key := prefix + "config"
	_, err := cli.Put(ctx, key, "v1")
	must(err)
	for _, want := range []string{"v1", "v1"} {
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "=", want)).
			Then(clientv3.OpPut(key, "v2")).
			Else(clientv3.OpPut(key, "v3")).
			Commit()
		must(err)
		got, err := cli.Get(ctx, key)
		must(err)
		fmt.Printf("txn if %s == %s: succeeded=%v, now %s\n", key, want, resp.Succeeded, got.Kvs[0].Value)
	}
}

func watch(ctx context.Context, cli *clientv3.Client) {
	key := prefix + "watched"
	start, err := cli.Get(ctx, key)
	must(err)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	// From the next revision on: only what happens after this point.
	ch := cli.Watch(wctx, key, clientv3.WithRev(start.Header.Revision+1))
	_, err = cli.Put(ctx, key, "first")
	must(err)
	_, err = cli.Put(ctx, key, "second")
	must(err)
	_, err = cli.Delete(ctx, key)
	must(err)
	seen := 0
	for resp := range ch {
		must(resp.Err())
		for _, ev := range resp.Events {
			fmt.Printf("watch %s %s %q\n", ev.Type, ev.Kv.Key, ev.Kv.Value)
			seen++
		}
		if seen == 3 {
			return
		}
	}
	panic("watch ended early")
}

func leases(ctx context.Context, cli *clientv3.Client) {
	// Kept alive: the key outlives its 2 s TTL several times over.
	kept, err := cli.Grant(ctx, 2)
	must(err)
	_, err = cli.Put(ctx, prefix+"session", "alive", clientv3.WithLease(kept.ID))
	must(err)
	kctx, stopKeepAlive := context.WithCancel(ctx)
	acks, err := cli.KeepAlive(kctx, kept.ID)
	must(err)
	go func() {
		for range acks {
		}
	}()
	time.Sleep(5 * time.Second)
	resp, err := cli.Get(ctx, prefix+"session")
	must(err)
	fmt.Printf("lease kept alive for 5s: %s present=%v\n", prefix+"session", len(resp.Kvs) == 1)
	stopKeepAlive()
	_, err = cli.Revoke(ctx, kept.ID)
	must(err)
	resp, err = cli.Get(ctx, prefix+"session")
	must(err)
	fmt.Printf("lease revoked: %s present=%v\n", prefix+"session", len(resp.Kvs) == 1)

	// Left to expire: the key is deleted with its lease; a watch sees the delete.
	short, err := cli.Grant(ctx, 2)
	must(err)
	put, err := cli.Put(ctx, prefix+"ephemeral", "soon gone", clientv3.WithLease(short.ID))
	must(err)
	wctx, stop := context.WithTimeout(ctx, 15*time.Second)
	defer stop()
	for resp := range cli.Watch(wctx, prefix+"ephemeral", clientv3.WithRev(put.Header.Revision+1)) {
		must(resp.Err())
		for _, ev := range resp.Events {
			fmt.Printf("lease expired: watch saw %s %s\n", ev.Type, ev.Kv.Key)
			ttl, err := cli.TimeToLive(ctx, short.ID)
			must(err)
			fmt.Printf("lease TTL after expiry: %d\n", ttl.TTL)
			return
		}
	}
	panic("the lease did not expire within 15 s")
}

// twoSessions: two clients' sessions (each a lease kept alive), closed by the returned func.
func twoSessions(cli *clientv3.Client) (*concurrency.Session, *concurrency.Session, func()) {
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	must(err)
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	must(err)
	return s1, s2, func() { s1.Close(); s2.Close() }
}

func mutex(ctx context.Context, cli *clientv3.Client) {
	s1, s2, closeSessions := twoSessions(cli)
	defer closeSessions()
	m1 := concurrency.NewMutex(s1, prefix+"lock")
	m2 := concurrency.NewMutex(s2, prefix+"lock")
	must(m1.Lock(ctx))
	fmt.Println("mutex: first session holds the lock")
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	err := m2.Lock(tctx)
	cancel()
	fmt.Printf("mutex: second session waited 1s and gave up: %v\n", err == context.DeadlineExceeded)
	must(m1.Unlock(ctx))
	must(m2.Lock(ctx))
	fmt.Println("mutex: after unlock the second session holds the lock")
	must(m2.Unlock(ctx))
}

func election(ctx context.Context, cli *clientv3.Client) {
	s1, s2, closeSessions := twoSessions(cli)
	defer closeSessions()
	e1 := concurrency.NewElection(s1, prefix+"election")
	e2 := concurrency.NewElection(s2, prefix+"election")
	must(e1.Campaign(ctx, "alpha"))
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "beta") }()
	leader, err := e1.Leader(ctx)
	must(err)
	fmt.Printf("election: leader is %s\n", leader.Kvs[0].Value)
	must(e1.Proclaim(ctx, "alpha-2"))
	leader, err = e2.Leader(ctx)
	must(err)
	fmt.Printf("election: leader proclaims %s\n", leader.Kvs[0].Value)
	must(e1.Resign(ctx))
	must(<-won)
	leader, err = e1.Leader(ctx)
	must(err)
	fmt.Printf("election: after resign the leader is %s\n", leader.Kvs[0].Value)
	must(e2.Resign(ctx))
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
