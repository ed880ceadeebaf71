// The requirements' acceptance steps, run with the etcd Go client (clientv3 3.4) against the
// endpoints in ETCD_ENDPOINTS: prints PASS or FAIL per step and exits 1 if any failed.
//
//  1. put foo=v1, get foo returns v1
//  2. txn: if foo == v1 then put foo=v2 else put foo=v3; it succeeds and foo is v2
//  3. a 5 s lease on bar: bar is there at once and gone 6 s later
//  4. a watch from the current revision + 1 sees a put of "watched"
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := strings.Split(os.Getenv("ETCD_ENDPOINTS"), ",")
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("FAIL connect:", err)
		os.Exit(1)
	}
	defer cli.Close()
	failed := 0
	for _, step := range []struct {
		name string
		run  func(context.Context, *clientv3.Client) error
	}{
		{"put foo=v1 and get it", putGet},
		{"txn foo==v1 then v2 else v3", txn},
		{"5 s lease on bar, gone after 6 s", lease},
		{"watch from current revision + 1 sees a put", watch},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := step.run(ctx, cli)
		cancel()
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", step.name, err)
		} else {
			fmt.Printf("PASS %s\n", step.name)
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}

func value(ctx context.Context, cli *clientv3.Client, key string) (string, bool, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return "", false, err
	}
	return string(resp.Kvs[0].Value), true, nil
}

func putGet(ctx context.Context, cli *clientv3.Client) error {
	if _, err := cli.Put(ctx, "foo", "v1"); err != nil {
		return err
	}
	got, ok, err := value(ctx, cli, "foo")
	if err != nil {
		return err
	}
	if !ok || got != "v1" {
		return fmt.Errorf("get foo: %q (present %v), want v1", got, ok)
	}
	return nil
}

func txn(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("foo"), "=", "v1")).
		Then(clientv3.OpPut("foo", "v2")).
		Else(clientv3.OpPut("foo", "v3")).
		Commit()
	if err != nil {
		return err
	}
	got, _, err := value(ctx, cli, "foo")
	if err != nil {
		return err
	}
	if !resp.Succeeded || got != "v2" {
		return fmt.Errorf("succeeded %v and foo %q, want true and v2", resp.Succeeded, got)
	}
	return nil
}

func lease(ctx context.Context, cli *clientv3.Client) error {
	grant, err := cli.Grant(ctx, 5)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, "bar", "leased", clientv3.WithLease(grant.ID)); err != nil {
		return err
	}
	if _, ok, err := value(ctx, cli, "bar"); err != nil || !ok {
		return fmt.Errorf("bar missing right after the put (%v)", err)
	}
	time.Sleep(6 * time.Second)
	if got, ok, err := value(ctx, cli, "bar"); err != nil || ok {
		return fmt.Errorf("bar still there after 6 s: %q (%v)", got, err)
	}
	return nil
}

func watch(ctx context.Context, cli *clientv3.Client) error {
	now, err := cli.Get(ctx, "watched")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ch := cli.Watch(wctx, "watched", clientv3.WithRev(now.Header.Revision+1))
	put, err := cli.Put(ctx, "watched", "seen")
	if err != nil {
		return err
	}
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut && string(ev.Kv.Value) == "seen" &&
				ev.Kv.ModRevision == put.Header.Revision {
				return nil
			}
			return fmt.Errorf("unexpected event %s %q at %d", ev.Type, ev.Kv.Value, ev.Kv.ModRevision)
		}
	}
	return fmt.Errorf("no event within 10 s")
}
