-- Prosody 0.12: an XEP-0363 upload component whose slots hmacfs serves.
--
-- Add this to prosody.cfg.lua (or a file it includes). It needs
-- mod_http_upload_external from prosody-modules; Debian's "prosody-modules"
-- package installs it where Prosody finds it, elsewhere add its directory to
-- plugin_paths. Clients find the component through service discovery on your
-- server, so "upload.example.org" needs no DNS record of its own.
--
-- hmacfs side (/etc/hmacfs/hmacfs.toml), matching the values below:
--   [server]   base_path = "/upload/", max_upload_size = "100MiB"
--   [security] the same secret, and "v1" and/or "v2" in protocols

Component "upload.example.org" "http_upload_external"
    -- hmacfs's public URL (nginx in front of it) followed by its base_path.
    -- It must end in "/": Prosody appends "<random>/<file name>".
    http_upload_external_base_url = "https://upload.example.org/upload/"

    -- The secret hmacfs has in security.secret or security.secret_file.
    http_upload_external_secret = "REPLACE-with-the-secret-shared-with-hmacfs"

    -- "v1" (Prosody's default) signs the path and size; "v2" also signs the
    -- content type the client asked the slot for, which its PUT must then send.
    http_upload_external_protocol = "v2"

    -- In bytes, equal to hmacfs's server.max_upload_size (100 MiB by default)
    -- so that every slot handed out is one hmacfs accepts.
    http_upload_external_file_size_limit = 100 * 1024 * 1024
