//! keel's cross-crate test support: the etcd process harness and shared helpers.
pub mod etcd;
pub mod ports;
pub mod support;

#[cfg(test)]
mod ports_tests {
    use crate::ports::{free_ports, range};
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports = free_ports(64);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        for &p in &ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("handed-out port binds");
            if let Some((low, high)) = range() {
                assert!(
                    (low..high).contains(&u32::from(p)),
                    "{p} outside {low}..{high}"
                );
            }
        }
    }
}
