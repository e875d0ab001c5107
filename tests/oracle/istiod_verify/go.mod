module cacerts-sync/istiod-verify

go 1.23
