package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// Document is one decoded manifest: its place in the input and its typed object.
type Document struct {
	Source string // file name (or "-"), and the document's index in it
	Index  int
	Kind   string
	Name   string
	Object runtime.Object
}

func (d *Document) String() string {
	return fmt.Sprintf("%s#%d %s/%s", d.Source, d.Index, d.Kind, d.Name)
}

// The API groups a chart of ours may render. A kind outside them is an error rather
// than a pass: what cannot be decoded cannot be checked.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, rbacv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Strict: unknown fields and duplicate keys are errors, as `kubectl apply
// --validate=strict` makes them on a server.
var strict = json.NewSerializerWithOptions(
	json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true},
)

// decodeAll splits a multi-document YAML stream and decodes each non-empty document.
func decodeAll(source string, data []byte) ([]*Document, []string) {
	var docs []*Document
	var problems []string
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for index := 0; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s#%d: cannot split the YAML stream: %v", source, index, err))
			break
		}
		if isEmpty(raw) {
			continue
		}
		doc, err := decodeOne(source, index, raw)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("%s: no documents", source))
	}
	return docs, problems
}

func decodeOne(source string, index int, raw []byte) (*Document, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := sigsyaml.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%s#%d: not a YAML mapping: %v", source, index, err)
	}
	where := fmt.Sprintf("%s#%d %s/%s", source, index, head.Kind, head.Metadata.Name)
	if head.APIVersion == "" || head.Kind == "" {
		return nil, fmt.Errorf("%s: apiVersion and kind are required", where)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: apiVersion %q: %v", where, head.APIVersion, err)
	}
	if !scheme.Recognizes(gv.WithKind(head.Kind)) {
		return nil, fmt.Errorf("%s: %s %s is not a kind this checker knows", where, head.APIVersion, head.Kind)
	}
	obj, _, err := strict.Decode(raw, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	return &Document{Source: source, Index: index, Kind: head.Kind, Name: head.Metadata.Name, Object: obj}, nil
}

func isEmpty(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}
