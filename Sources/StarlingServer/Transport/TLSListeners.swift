import Foundation
import NIOConcurrencyHelpers
import NIOSSL

extension ServerConfiguration {
    /// The `[tls]` table: `wss://` + HTTPS and STOMP-over-TLS listeners beside the plain ones.
    public struct TLS: Sendable, Equatable {
        /// PEM: the server's certificate, then any intermediates.
        public var certificateFile: String
        /// PEM private key (RSA or EC), unencrypted.
        public var keyFile: String
        /// Address of the TLS listeners; nil = the top-level `host`. Lets the plain listeners stay on loopback while
        /// TLS faces the network.
        public var host: String?
        /// HTTPS + `wss://` port; nil = off, 0 = any free port.
        public var port: Int? = 8443
        /// STOMP over TLS port; nil = off, 0 = any free port.
        public var stompPort: Int? = 61614
        public var minimumVersion = MinimumVersion.v1_2
        /// With a CA file, clients must present a certificate it signed (mutual TLS).
        public var clientCAFile: String?

        public enum MinimumVersion: String, Sendable, CaseIterable {
            case v1_2 = "1.2"
            case v1_3 = "1.3"
        }

        public init(certificateFile: String, keyFile: String) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// Reads a `[tls]` table; the files are read (and checked) when the server starts.
    mutating func setTLS(_ table: ConfigFile.Table) throws(SettingError) {
        var certificate: String?
        var key: String?
        var tls = TLS(certificateFile: "", keyFile: "")
        for entry in table.entries {
            switch entry.key {
            case "cert-file": certificate = entry.value
            case "key-file": key = entry.value
            case "client-ca-file": tls.clientCAFile = entry.value
            case "host": tls.host = entry.value
            case "port", "stomp-port":
                var port: Int?
                if entry.value != "off" {
                    guard let number = Int(entry.value), (0...65535).contains(number) else {
                        throw SettingError("\(entry.location): \(entry.key): expected a port 0...65535 or \"off\", got '\(entry.value)'")
                    }
                    port = number
                }
                if entry.key == "port" { tls.port = port } else { tls.stompPort = port }
            case "min-version":
                guard let version = TLS.MinimumVersion(rawValue: entry.value) else {
                    throw SettingError("\(entry.location): min-version: expected \"1.2\" or \"1.3\", got '\(entry.value)'")
                }
                tls.minimumVersion = version
            default:
                throw SettingError(
                    "\(entry.location): unknown [tls] key '\(entry.key)' (expected cert-file, key-file, host, port, stomp-port, min-version, client-ca-file)"
                )
            }
        }
        guard let certificate, let key else {
            throw SettingError("\(table.location): [tls] needs cert-file and key-file (PEM)")
        }
        guard tls.port != nil || tls.stompPort != nil else {
            throw SettingError("\(table.location): [tls] has port and stomp-port both \"off\": no TLS listener")
        }
        tls.certificateFile = certificate
        tls.keyFile = key
        self.tls = tls
    }
}

/// The TLS context new connections use. Built from the `[tls]` files at start and again on SIGHUP; a connection keeps
/// the context it was accepted with, so a reload never touches open connections.
final class TLSContextHolder: Sendable {
    private let current: NIOLockedValueBox<NIOSSLContext>

    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    init(_ settings: ServerConfiguration.TLS) throws(LoadError) {
        self.current = NIOLockedValueBox(try Self.load(settings))
    }

    /// The context for a connection being accepted now.
    var context: NIOSSLContext { self.current.withLockedValue { $0 } }

    /// A context built from `settings` (new file names, a new minimum version or client CA), not yet in use.
    struct Prepared {
        fileprivate var context: NIOSSLContext
    }

    static func prepare(_ settings: ServerConfiguration.TLS) throws(LoadError) -> Prepared {
        Prepared(context: try Self.load(settings))
    }

    /// Uses `prepared` for the connections accepted from now on.
    func install(_ prepared: Prepared) {
        self.current.withLockedValue { $0 = prepared.context }
    }

    private static func load(_ settings: ServerConfiguration.TLS) throws(LoadError) -> NIOSSLContext {
        let files = [("cert-file", settings.certificateFile), ("key-file", settings.keyFile)] + (settings.clientCAFile.map { [("client-ca-file", $0)] } ?? [])
        for (key, path) in files where !FileManager.default.isReadableFile(atPath: path) {
            throw LoadError(description: "tls: \(key) '\(path)': cannot read the file")
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(settings.certificateFile)
        } catch {
            throw LoadError(description: "tls: cert-file '\(settings.certificateFile)': \(Self.describe(error))")
        }
        guard !chain.isEmpty else {
            throw LoadError(description: "tls: cert-file '\(settings.certificateFile)' holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)
        } catch {
            throw LoadError(description: "tls: key-file '\(settings.keyFile)': \(Self.describe(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = settings.minimumVersion == .v1_3 ? .tlsv13 : .tlsv12
        if let caFile = settings.clientCAFile {
            let authorities: [NIOSSLCertificate]
            do {
                authorities = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw LoadError(description: "tls: client-ca-file '\(caFile)': \(Self.describe(error))")
            }
            guard !authorities.isEmpty else { throw LoadError(description: "tls: client-ca-file '\(caFile)' holds no PEM certificate") }
            configuration.trustRoots = .certificates(authorities)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            // The files were read above; what fails here is the pair (BoringSSL checks the key against the certificate).
            let reason = if case .failedToLoadPrivateKey = error as? NIOSSLError { "the key does not match the certificate" } else { "\(error)" }
            throw LoadError(description: "tls: cert-file '\(settings.certificateFile)' with key-file '\(settings.keyFile)': \(reason)")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? NIOSSLError {
            switch error {
            case .failedToLoadCertificate: return "not a readable PEM certificate"
            case .failedToLoadPrivateKey: return "not a readable, unencrypted PEM private key"
            default: return "\(error)"
            }
        }
        return "\(error)"
    }
}
