// Command kubecheck checks rendered Kubernetes manifests offline, against the
// Kubernetes API's own Go types: every document is decoded strictly into the type its
// apiVersion and kind name (an unknown or misspelt field, a duplicate key, a wrong
// value type or an unknown kind is an error), then held to a subset of the API
// server's validation and to cross-document references (selectors, volumes, ports).
//
// With -gateway it also checks what the gateway's chart promises: probes on /healthz
// and /readyz, containers that cannot run as root or write their root filesystem, the
// migration Job connecting with the owner role's Secret and the serving workloads with
// the app role's.
//
//	helm template gw deploy/helm/gateway | kubecheck -gateway -
//
// Exit status: 0 when every document passes, 1 when any problem was found, 2 for a
// usage or read error.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	gateway := flag.Bool("gateway", false, "also check the gateway chart's own promises")
	ownerSecret := flag.String("owner-secret", "", "with -gateway: the Secret the migration Job must use")
	appSecret := flag.String("app-secret", "", "with -gateway: the Secret the gateway and workers must use")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: kubecheck [-gateway [-owner-secret NAME] [-app-secret NAME]] FILE|- ...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var docs []*Document
	var problems []string
	for _, name := range flag.Args() {
		data, err := readInput(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubecheck: %v\n", err)
			os.Exit(2)
		}
		parsed, errs := decodeAll(name, data)
		docs = append(docs, parsed...)
		problems = append(problems, errs...)
	}
	problems = append(problems, validateAll(docs)...)
	if *gateway {
		problems = append(problems, checkGateway(docs, *ownerSecret, *appSecret)...)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		fmt.Printf("kubecheck: %d problem(s) in %d document(s)\n", len(problems), len(docs))
		os.Exit(1)
	}
	fmt.Printf("kubecheck: ok, %d document(s)\n", len(docs))
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}
