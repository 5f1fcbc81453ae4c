import DockerParallel
import DockerParallelCore
import Foundation
import Testing

/// Server and worker entry points read the password from the file a swarm secret is mounted as.
@Suite struct PasswordFileTests {
    @Test func thePasswordIsReadFromTheFileThatTheVariableNamesWithoutItsLineBreak() throws {
        let path = NSTemporaryDirectory() + "dp-secret-\(UUID().uuidString.prefix(8))"
        try Data("s3cretpassword\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fromFile = try DockerParallelMain.secret(
            EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: [EnvironmentKey.passwordFile: path])
        #expect(fromFile == "s3cretpassword")
        // The variable itself comes first.
        let fromVariable = try DockerParallelMain.secret(
            EnvironmentKey.password, file: EnvironmentKey.passwordFile,
            in: [EnvironmentKey.password: "direct", EnvironmentKey.passwordFile: path])
        #expect(fromVariable == "direct")
        #expect(try DockerParallelMain.secret(EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: [:]) == nil)
    }

    @Test func aMissingFileIsAnErrorNamingTheVariableAndTheFix() {
        let error = #expect(throws: DockerParallelError.self) {
            try DockerParallelMain.secret(
                EnvironmentKey.password, file: EnvironmentKey.passwordFile,
                in: [EnvironmentKey.passwordFile: "/run/secrets/no-such-secret"])
        }
        #expect(error?.message.contains("/run/secrets/no-such-secret") == true)
        #expect(error?.message.contains("DOCKERPARALLEL_PASSWORD_FILE") == true)
        #expect(error?.message.contains("secret is mounted") == true)
    }
}
