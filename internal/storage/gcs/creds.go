package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// Credentials. golang.org/x/oauth2/google would read every kind of Google
// credentials file, but it links the metadata client and the workload
// identity federation code, which cost every tusk process about 0.7 MiB of
// RSS (docs/benchmarks.md) for kinds of credentials WAL-G users rarely
// have. tusk reads the three common ones itself, with x/oauth2's JWT and
// refresh-token flows:
//   - a service account key file (type "service_account");
//   - gcloud's user credentials (type "authorized_user"), as written by
//     `gcloud auth application-default login`;
//   - with neither, the metadata server of a Google Cloud VM.
//
// Workload identity federation ("external_account") and impersonation
// files are refused, naming the setting.

const (
	// scope: read, write and delete objects; nothing about buckets or ACLs.
	scope = "https://www.googleapis.com/auth/devstorage.read_write"
	// googleTokenURL is where Google's credentials files get tokens by
	// default.
	googleTokenURL = "https://oauth2.googleapis.com/token"
	// metadataTokenURL is the metadata server's token of the VM's
	// default service account (by address: no DNS needed).
	metadataTokenURL = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
	// tokenTimeout bounds one token request; metadataTimeout one to the
	// metadata server, which off Google Cloud does not answer at all.
	tokenTimeout    = 30 * time.Second
	metadataTimeout = 5 * time.Second
)

// credentialsFile holds the fields of the kinds of file tusk reads.
type credentialsFile struct {
	Type string `json:"type"`
	// service_account
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
	// authorized_user
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RefreshToken string `json:"refresh_token"`
}

// tokenSource reads the credentials and says where they came from, for
// errors. Tokens are fetched later, with a context of their own (oauth2
// keeps the one given here for every refresh), bounded by tokenTimeout.
func tokenSource(ctx context.Context, o Options) (oauth2.TokenSource, string, error) {
	ctx = context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, &http.Client{Timeout: tokenTimeout})
	file, from := o.CredentialsFile, "GOOGLE_APPLICATION_CREDENTIALS="+o.CredentialsFile
	if file == "" {
		// Google's application-default order: gcloud's file, then the
		// metadata server.
		if home, err := os.UserHomeDir(); err == nil {
			if f := filepath.Join(home, ".config", "gcloud", "application_default_credentials.json"); fileExists(f) {
				file, from = f, "gcloud's credentials "+f+" (GOOGLE_APPLICATION_CREDENTIALS is not set)"
			}
		}
	}
	if file == "" {
		u := metadataTokenURL
		if o.metadataURL != "" {
			u = o.metadataURL
		}
		return &metadataSource{url: u, client: &http.Client{Timeout: metadataTimeout}},
			"the metadata server (GOOGLE_APPLICATION_CREDENTIALS is not set)", nil
	}
	name := "GOOGLE_APPLICATION_CREDENTIALS: " + file
	if o.CredentialsFile == "" {
		name = file
	}
	b, err := os.ReadFile(file)
	if err != nil {
		if o.CredentialsFile != "" {
			return nil, "", fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS: %w", err)
		}
		return nil, "", err
	}
	var f credentialsFile
	if json.Unmarshal(b, &f) != nil {
		return nil, "", fmt.Errorf("%s is not a JSON credentials file", name)
	}
	switch f.Type {
	case "service_account":
		if f.ClientEmail == "" || f.PrivateKey == "" {
			return nil, "", fmt.Errorf("%s: a service account key without client_email or private_key", name)
		}
		c := &jwt.Config{Email: f.ClientEmail, PrivateKey: []byte(f.PrivateKey), PrivateKeyID: f.PrivateKeyID,
			Scopes: []string{scope}, TokenURL: f.TokenURI}
		if c.TokenURL == "" {
			c.TokenURL = googleTokenURL
		}
		return c.TokenSource(ctx), from, nil
	case "authorized_user":
		if f.ClientID == "" || f.RefreshToken == "" {
			return nil, "", fmt.Errorf("%s: user credentials without client_id or refresh_token", name)
		}
		c := &oauth2.Config{ClientID: f.ClientID, ClientSecret: f.ClientSecret, Scopes: []string{scope},
			Endpoint: oauth2.Endpoint{TokenURL: googleTokenURL, AuthStyle: oauth2.AuthStyleInParams}}
		if f.TokenURI != "" {
			c.Endpoint.TokenURL = f.TokenURI
		}
		return c.TokenSource(ctx, &oauth2.Token{RefreshToken: f.RefreshToken}), from, nil
	}
	return nil, "", fmt.Errorf("%s: credentials of type %q are not supported (use a service account key, gcloud's user credentials or the metadata server)", name, f.Type)
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// metadataSource gets the VM's service account token from the metadata
// server.
type metadataSource struct {
	url    string
	client *http.Client
}

func (m *metadataSource) Token() (*oauth2.Token, error) {
	req, err := http.NewRequest(http.MethodGet, m.url+"?scopes="+scope, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer from the metadata server (not on Google Cloud?): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the metadata server answered %s", resp.Status)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, errorBodyLimit)).Decode(&t); err != nil {
		return nil, fmt.Errorf("the metadata server's token: %w", err)
	}
	if t.AccessToken == "" {
		return nil, errors.New("the metadata server gave no access token")
	}
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType,
		Expiry: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}, nil
}
