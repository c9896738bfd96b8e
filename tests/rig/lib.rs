//! The test rig: real sshd, nginx and JVM for the integration tests.
