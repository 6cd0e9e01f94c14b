from crm_knowledge.demo.generate import main

raise SystemExit(main())
