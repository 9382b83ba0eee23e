//! Tests of the multishot receiver: nothing lost through bursts, pauses and stops; the fallback
//! when the buffer ring is empty; dropping an armed receiver.

mod transfer {
    use super::super::*;
    use std::io::Write;
    use std::time::Duration;

    /// A connected pair inside the current runtime: a std socket to write from another thread,
    /// and the ring's end of it.
    pub(super) fn pair() -> (std::net::TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let writer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let stream = compio::net::TcpStream::from_std(accepted).expect("on the ring");
        (writer, TcpStream::from_compio(stream))
    }

    /// Byte `i` of the test stream.
    fn byte(i: usize) -> u8 {
        (i.wrapping_mul(31) ^ (i >> 11)) as u8
    }

    /// Writes `total` bytes of the pattern in uneven pieces, pausing now and then.
    pub(super) fn write_pattern(
        mut to: std::net::TcpStream,
        total: usize,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let all: Vec<u8> = (0..total).map(byte).collect();
            let mut at = 0;
            let mut step = 1;
            while at < total {
                let n = (step * 977 % 70_000 + 1).min(total - at);
                to.write_all(&all[at..at + n]).expect("write");
                at += n;
                step += 1;
                if step % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    }

    /// Receives to EOF, checking every byte against the pattern; pauses (not reading) now and
    /// then so that the receiver must hold, stop and drain. Returns the bytes received and how many
    /// pauses found the multishot receive stopped (more than [`MAX_HELD`] had arrived), and how
    /// often the ring had no buffer for it.
    pub(super) async fn receive_all(stream: &TcpStream) -> (usize, usize, usize) {
        let mut rx = Receiver::new(stream);
        let mut batch = Batch::new();
        let (mut got, mut stopped, mut round) = (0, 0, 0);
        loop {
            match rx.recv(&mut batch).await.expect("recv") {
                false => return (got, stopped, rx.out_of_buffers),
                true => {
                    for chunk in &batch.chunks {
                        for (k, b) in chunk.iter().enumerate() {
                            assert_eq!(*b, byte(got + k), "byte {} out of order or lost", got + k);
                        }
                        got += chunk.len();
                    }
                    batch.clear(&mut rx.bufs);
                }
            }
            round += 1;
            if round % 5 == 0 {
                // Not reading for a while: what arrives must be held within bounds.
                crate::net::time::sleep(Duration::from_millis(2)).await;
                poll_fn(|cx| {
                    rx.poll_hold(cx);
                    Poll::Ready(())
                })
                .await;
                // Everything posted is held (the ring bounds it); past MAX_HELD the multishot
                // receive is stopped and the rest waits in the socket.
                assert!(rx.held.len() <= crate::net::ring::PROVIDED_BUFFERS as usize);
                if rx.held.len() > MAX_HELD {
                    assert!(
                        matches!(rx.mode, Mode::Draining(..) | Mode::Burst | Mode::Starved),
                        "{} held and still armed",
                        rx.held.len()
                    );
                    stopped += 1;
                }
            }
        }
    }

    #[test]
    fn bursts_and_pauses_lose_nothing_and_hold_little() {
        let total = 8 << 20;
        let ((got, stopped, _), _) = crate::net::ring::block_on(async {
            let (writer, stream) = pair();
            let sender = write_pattern(writer, total);
            let result = receive_all(&stream).await;
            sender.join().expect("writer");
            result
        })
        .expect("ring");
        assert_eq!(got, total);
        assert!(
            stopped > 0,
            "no pause ever made the receiver stop: the test tests nothing"
        );
    }

    #[test]
    fn an_empty_buffer_ring_falls_back_to_single_shot_reads() {
        // A ring of two buffers for four busy sockets: multishot receives end with ENOBUFS.
        let mut proactor = compio::driver::ProactorBuilder::new();
        proactor
            .buffer_pool_size(std::num::NonZeroU16::new(2).expect("two"))
            .buffer_pool_buffer_len(PROVIDED_LEN);
        let rt = compio::runtime::RuntimeBuilder::new()
            .with_proactor(proactor)
            .build()
            .expect("runtime");
        let total = 2 << 20;
        let counts = rt.block_on(async {
            let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
            let mut senders = Vec::new();
            let mut streams = Vec::new();
            for (writer, stream) in pairs {
                senders.push(write_pattern(writer, total));
                streams.push(stream);
            }
            let results = futures_util::future::join_all(streams.iter().map(receive_all)).await;
            for s in senders {
                s.join().expect("writer");
            }
            results
        });
        let mut out_of_buffers = 0;
        for (got, _, short) in counts {
            assert_eq!(got, total);
            out_of_buffers += short;
        }
        assert!(
            out_of_buffers > 0,
            "the ring never ran dry: the test tests nothing"
        );
    }
}

mod drop {
    use super::super::*;
    use std::io::Write;
    use std::time::Duration;

    /// A receiver dropped while its multishot receive is armed and data keeps coming (a
    /// passthrough client whose server could not be reached; a worker stopping): compio cancels
    /// the operation and gives its queued buffers back. Run 50 times, then the ring must still
    /// carry a transfer whole.
    #[test]
    fn dropping_an_armed_receiver_is_safe() {
        let (_, _) = crate::net::ring::block_on(async {
            for round in 0..50 {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let mut writer =
                    std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("c");
                let (accepted, _) = listener.accept().expect("accept");
                let stream = TcpStream::from_compio(
                    compio::net::TcpStream::from_std(accepted).expect("ring"),
                );
                // Small pieces: the receiver stays armed (no full buffer, little held).
                let sender = std::thread::spawn(move || {
                    for _ in 0..20 {
                        if writer.write_all(&[round as u8; 100]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(300));
                    }
                });
                {
                    let mut rx = Receiver::new(&stream);
                    let mut batch = Batch::new();
                    assert!(rx.recv(&mut batch).await.expect("recv"));
                    batch.clear(&mut rx.bufs);
                    assert!(
                        matches!(rx.mode, Mode::Armed(..)),
                        "still armed when dropped"
                    );
                }
                crate::net::time::sleep(Duration::from_millis(2)).await;
                stream.abort();
                drop(stream);
                let _ = sender.join();
            }
            // The ring still has its buffers and works.
            let (writer, stream) = super::transfer::pair();
            let sender = super::transfer::write_pattern(writer, 1 << 20);
            let (got, _, _) = super::transfer::receive_all(&stream).await;
            sender.join().expect("writer");
            assert_eq!(got, 1 << 20);
        })
        .expect("ring");
    }
}
