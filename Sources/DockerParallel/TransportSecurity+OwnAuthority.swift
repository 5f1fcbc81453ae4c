import DockerParallelCore
import DockerParallelServer

extension TransportSecurity {
    /// TLS with a new certificate authority of the cluster's own and a server certificate it
    /// signed: what a cluster makes itself when it first starts its server with ``automatic``.
    public static func ownAuthority(for jobQueueName: String) throws -> TransportSecurity {
        try ClusterCertificates.make(jobQueueName: jobQueueName)
    }
}
